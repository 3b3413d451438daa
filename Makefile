# One venv for everything; torch is pinned first so pip takes the CPU build quickly.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup demo test e2e lint crds bench
$(BIN)/llmops: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[all]'
	touch $@

setup: $(BIN)/llmops

demo: setup  ## the main job: train the tiny example on CPU, serve it, ask it; then render a p5 job
	$(BIN)/llmops local demo
	$(BIN)/llmops validate manifests/examples/*.yaml
	$(BIN)/llmops render manifests/examples/p5-efa-training.yaml

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
