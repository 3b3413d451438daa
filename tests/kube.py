"""Strict schema checks for rendered objects, shared by the render, CLI and property tests."""

from __future__ import annotations

from functools import cache
from typing import Any

import kubernetes_validate
import yaml

from tests.manifests import SHARED

VERSIONS = ["1.29", kubernetes_validate.latest_version()]
UPSTREAM_PYTORCHJOB = SHARED / "schemas" / "kubeflow.org_pytorchjobs.v1.9.0.yaml"


@cache
def pytorchjob_validator() -> Any | None:
    """The upstream Kubeflow v1.9.0 CRD schema, when ../shared is beside the checkout (an optional extra)."""
    if not UPSTREAM_PYTORCHJOB.is_file():
        return None
    from openapi_schema_validator import OAS30Validator

    crd = yaml.safe_load(UPSTREAM_PYTORCHJOB.read_text())
    return OAS30Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def assert_valid(obj: dict[str, Any], versions: list[str] = VERSIONS) -> None:
    """Built-in kinds strictly against Kubernetes' schemas; a PyTorchJob's pod templates as core
    PodTemplates, plus the whole job against the upstream CRD where it is available."""
    if obj["kind"] != "PyTorchJob":
        for version in versions:
            kubernetes_validate.validate(obj, version, strict=True)
        return
    replicas = obj["spec"]["pytorchReplicaSpecs"]
    assert next(iter(replicas)) == "Master" and replicas["Master"]["replicas"] == 1
    for spec in replicas.values():
        names = [c["name"] for c in spec["template"]["spec"]["containers"]]
        assert "pytorch" in names, "Kubeflow's webhook wants a container named pytorch"
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": spec["template"],
        }
        for version in versions:
            kubernetes_validate.validate(template, version, strict=True)
    validator = pytorchjob_validator()
    if validator is not None:
        errors = [e.message for e in validator.iter_errors(obj)]
        assert not errors, errors
