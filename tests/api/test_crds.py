"""The CRDs come from the models, are committed, are structural and validate as Kubernetes objects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from llmops_core.crd import all_crds, crd_files, structural
from tests.manifests import ROOT

CRD_DIR = ROOT / "manifests" / "crds"
VERSIONS = ["1.29", kubernetes_validate.latest_version()]


def test_committed_crds_match_the_models() -> None:
    for name, text in crd_files().items():
        committed = CRD_DIR / name
        assert committed.is_file(), f"{committed} missing: run `llmops crds --write manifests/crds`"
        assert committed.read_text() == text, (
            f"{committed} is stale: run `llmops crds --write manifests/crds`"
        )


def nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node (not the anyOf branches of int-or-string, which are spelled as Kubernetes wants)."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    assert "$ref" not in text and "$defs" not in text and "title:" not in text
    for path, node in nodes(schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
            continue
        assert "type" in node, f"{path or '(root)'} has no type"
        assert node.get("additionalProperties") is not False, path
        assert "anyOf" not in node and "oneOf" not in node, path
        if node["type"] == "object" and "properties" in node:
            assert set(node.get("required", [])) <= set(node["properties"]), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, f"{path}: OpenAPI v3.0 wants a boolean"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_crd_validates_strictly(crd: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(crd, version, strict=True)


def test_crd_validation_catches_a_broken_crd() -> None:
    broken = all_crds()[0]
    broken["spec"]["scope"] = 42
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_names_columns_and_subresources() -> None:
    tj, ie = all_crds()
    assert tj["spec"]["names"]["shortNames"] == ["tj"] and ie["spec"]["names"]["shortNames"] == ["ie"]
    assert tj["spec"]["names"]["categories"] == ie["spec"]["names"]["categories"] == ["llmops"]
    tj_v, ie_v = tj["spec"]["versions"][0], ie["spec"]["versions"][0]
    assert tj_v["subresources"] == {"status": {}}
    assert ie_v["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas.min"
    assert [c["name"] for c in tj_v["additionalPrinterColumns"]] == [
        "Phase",
        "Shape",
        "Progress",
        "Loss",
        "ETA",
        "Age",
    ]
    assert [c["name"] for c in ie_v["additionalPrinterColumns"]][:2] == ["Ready", "Replicas"]


def test_status_conditions_are_a_list_map() -> None:
    for crd in all_crds():
        cond = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
            "conditions"
        ]
        assert cond["x-kubernetes-list-type"] == "map" and cond["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in cond["items"]["required"]


def test_cel_rules_where_expressible() -> None:
    tj, ie = (c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] for c in all_crds())
    replicas_rules = {
        r["message"]: r["rule"] for r in ie["properties"]["replicas"]["x-kubernetes-validations"]
    }
    assert "has(self.min)" in replicas_rules["min must not exceed max"]
    assert any(m.startswith("min must be at least 1") for m in replicas_rules)
    for field in ("model", "data", "hyperparameters", "resources", "checkpoint", "output"):
        rules = [r["rule"] for r in tj["properties"][field]["x-kubernetes-validations"]]
        assert "self == oldSelf" in rules, field
    assert "x-kubernetes-validations" not in tj["properties"]["runPolicy"], "suspend must stay editable"


def test_quantities_are_int_or_string() -> None:
    tj = all_crds()[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    memory = tj["properties"]["resources"]["properties"]["memory"]
    assert memory["x-kubernetes-int-or-string"] is True and "pattern" in memory


def test_structural_rejects_unions_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="cannot express"):
        structural({"anyOf": [{"type": "string"}, {"type": "object", "properties": {}}]})
