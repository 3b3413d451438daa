# One venv for everything; torch is pinned first so pip settles it quickly. Plain PyPI gives Linux a
# CUDA build of several GB (it runs on CPU too); for the small CPU build, where PyTorch's own index is
# reachable: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# The oldest transformers we allow, beside the venv's newest: a test loads the trainer's export in both.
OLD_TRANSFORMERS := $(VENV)/transformers-4
export LLMOPS_TEST_OLD_TRANSFORMERS := $(abspath $(OLD_TRANSFORMERS))

.PHONY: setup demo test e2e lint crds
$(BIN)/llmops: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps --target $(OLD_TRANSFORMERS) \
		transformers==4.45.2 tokenizers==0.20.3 huggingface-hub==0.26.5
	touch $@

setup: $(BIN)/llmops

demo: setup  ## the main job: train the tiny example on CPU, serve it, ask it, show the manifests
	$(BIN)/llmops quickstart

test: setup  ## the whole CPU suite (e2e tests are skipped unless --e2e)
	$(BIN)/python -m pytest -q

e2e: setup  ## the e2e suite on the simulated cluster (builds the control plane once; docs/e2e.md)
	nice bash cli/llmops/dev/build.sh
	$(BIN)/python -m pytest -q tests/e2e tests/install/test_install_e2e.py --e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

crds: setup  ## regenerate manifests/crds from the pydantic models, then the chart's CRDs and install.yaml
	$(BIN)/llmops crds --write manifests/crds
	$(BIN)/python -m tests.install.chart
