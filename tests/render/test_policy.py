"""The operator config's allow-lists: a resource whose image or ServiceAccount they do not allow is
refused by the renderer (every way to objects), naming the field; without lists anything goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_core import api
from llmops_core.config import OperatorConfig
from llmops_operator.render import render
from tests.manifests import endpoint, training_job

POLICY = OperatorConfig(
    allowed_images=["registry.example.com/ml/*", "vllm/vllm-openai:v0.10.*"],
    allowed_service_accounts=["trainer", "serving-*"],
)
DOCS = {"TrainingJob": training_job, "InferenceEndpoint": endpoint}


def issues(doc: dict, config: OperatorConfig) -> dict[str, str]:
    with pytest.raises(api.SpecError) as err:
        render(api.load(doc), config)
    return {i.path: i.message for i in err.value.issues}


@pytest.mark.parametrize("kind", DOCS)
def test_images_and_service_accounts_outside_the_lists_are_refused(kind: str) -> None:
    found = issues(DOCS[kind](image="evil.io/miner:latest", serviceAccountName="admin"), POLICY)
    assert "'evil.io/miner:latest' is not allowed here" in found["spec.image"]
    assert "registry.example.com/ml/*" in found["spec.image"]
    assert "'admin' is not allowed here" in found["spec.serviceAccountName"]


@pytest.mark.parametrize("kind", DOCS)
def test_what_the_lists_allow_renders(kind: str) -> None:
    allowed = DOCS[kind](image="registry.example.com/ml/llm:1.2", serviceAccountName="serving-a")
    assert render(api.load(allowed), POLICY)
    assert render(api.load(DOCS[kind]()), POLICY), "the operator's default images and accounts are allowed"
    anything = DOCS[kind](image="evil.io/miner:latest", serviceAccountName="admin")
    assert render(api.load(anything), OperatorConfig()), "no lists: no restriction"


def test_a_lookalike_registry_is_refused() -> None:
    doc = training_job(image="registry.example.com/ml.evil.io/x")
    assert "spec.image" in issues(doc, OperatorConfig(allowed_images=["registry.example.com/ml/*"]))


def test_lists_from_environment_and_file(tmp_path: Path) -> None:
    env = {"LLMOPS_ALLOWED_IMAGES": "a/*, b/c:1", "LLMOPS_ALLOWED_SERVICE_ACCOUNTS": "trainer"}
    config = OperatorConfig.load(environ=env)
    assert config.allowed_images == ["a/*", "b/c:1"] and config.allowed_service_accounts == ["trainer"]
    path = tmp_path / "config.yaml"
    path.write_text("allowed_images: [x/*]\n")
    assert OperatorConfig.load(path, environ={}).allowed_images == ["x/*"]
