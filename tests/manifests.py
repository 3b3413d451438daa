"""Shared test data: the shipped examples and minimal valid manifests to mutate."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
SHARED = ROOT.parent / "shared"


def example_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d]


def training_job(**spec: Any) -> dict[str, Any]:
    base = {
        "model": {"preset": "tiny"},
        "data": {"train": "/data/corpus.txt"},
        "output": {"location": "pvc://models/out"},
        "resources": {"accelerator": "cpu"},
    }
    base.update(copy.deepcopy(spec))
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "job"},
        "spec": base,
    }


def endpoint(**spec: Any) -> dict[str, Any]:
    base = {"model": {"location": "pvc://models/out"}}
    base.update(copy.deepcopy(spec))
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "ep"},
        "spec": base,
    }
