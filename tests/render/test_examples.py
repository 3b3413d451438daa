"""Every shipped example renders to objects that pass strict schema validation; a few have goldens.

Regenerate goldens after an intended change with ``LLMOPS_UPDATE_GOLDEN=1 pytest tests/render``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from llmops_core import api
from llmops_operator.render import render
from tests.kube import assert_valid, pytorchjob_validator
from tests.manifests import EXAMPLES, example_docs

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_EXAMPLES = ["tiny-cpu-training.yaml", "p5-efa-training.yaml", "vllm-gpu-endpoint.yaml"]
OUTPUTS = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d["spec"]["output"]["location"]
           for _, d in example_docs() if d["kind"] == "TrainingJob"}  # fmt: skip


def rendered(doc: dict) -> list[dict]:
    resource = api.load(doc)
    source = getattr(resource.spec.model, "from_training_job", None)
    return render(resource, resolved_model=OUTPUTS.get((resource.metadata.namespace, source)))


def test_there_are_six_examples() -> None:
    assert len(EXAMPLES) == 6


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_example_objects_pass_strict_validation(name: str, doc: dict) -> None:
    objects = rendered(doc)
    assert objects
    for obj in objects:
        assert_valid(obj)


def test_upstream_pytorchjob_schema_rejects_a_bad_job() -> None:
    validator = pytorchjob_validator()
    if validator is None:
        pytest.skip("../shared/schemas is absent: the upstream Kubeflow CRD check is an optional extra")
    tiny = next(d for n, d in example_docs() if n == "tiny-cpu-training.yaml")
    job = next(o for o in rendered(tiny) if o["kind"] == "PyTorchJob")
    assert not list(validator.iter_errors(job))
    job["spec"]["nprocPerNode"] = 8  # the CRD wants a string
    assert list(validator.iter_errors(job))


@pytest.mark.parametrize("name", GOLDEN_EXAMPLES)
def test_golden_output(name: str) -> None:
    docs = [d for n, d in example_docs() if n == name]
    text = yaml.safe_dump_all([o for d in docs for o in rendered(d)], sort_keys=False)
    golden = GOLDEN / name
    if os.environ.get("LLMOPS_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.read_text() == text, (
        f"{golden} differs; if intended, regenerate with LLMOPS_UPDATE_GOLDEN=1"
    )
