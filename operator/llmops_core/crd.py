"""Generate the CustomResourceDefinitions from the pydantic models (the one source of truth).

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``,
a ``type`` on every node, ``nullable`` instead of ``null`` unions, int-or-string spelled its own way,
no ``additionalProperties: false``. :func:`structural` does that translation and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .api import GROUP, VERSION, InferenceEndpoint, TrainingJob
from .api.common import CONDITIONS_SCHEMA


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**_deref(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
            return _deref(merged, defs)
        return {k: _deref(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, defs) for v in node]
    return node


def structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one (dereferenced) JSON Schema node as a structural OpenAPI v3 node."""
    node = dict(node)
    extra = {k: node.pop(k) for k in list(node) if k.startswith("x-kubernetes-")}
    if "anyOf" in node:
        members = [m for m in node.pop("anyOf") if m.get("type") != "null"]
        if extra.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            out: dict[str, Any] = {"anyOf": [{"type": "integer"}, {"type": "string"}], **extra}
            out.update({k: node[k] for k in ("description", "pattern") if k in node})
            return out
        if len(members) == 1:
            inner = members[0]
            inner_extra = {k: inner.pop(k) for k in list(inner) if k.startswith("x-kubernetes-")}
            if inner_extra.get("x-kubernetes-int-or-string"):
                return structural({**node, **inner, **inner_extra, **extra})
            merged = {**inner, **{k: v for k, v in node.items() if k not in {"default"}}}
            return structural({**merged, **inner_extra, **extra})
        if {m.get("type") for m in members} <= {"integer", "number"}:
            return structural({**node, "type": "number", **extra})
        raise ValueError(f"cannot express union {members} structurally")
    out = {}
    for key, value in node.items():
        if key in {"title", "default", "discriminator"}:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "properties":
            out[key] = {k: structural(v) for k, v in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = structural(value)
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "properties" in out:
        out["type"] = "object"
    out.update(extra)
    return out


def _schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(_deref({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {})))


def _status_schema(model: type) -> dict[str, Any]:
    schema = _schema(model)
    schema["properties"]["conditions"].update(CONDITIONS_SCHEMA)
    schema["properties"]["conditions"]["items"]["required"] = ["type", "status"]
    return schema


def _root(spec_model: type, status_model: type) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _schema(spec_model),
            "status": _status_schema(status_model),
        },
    }


def _column(name: str, type_: str, path: str, description: str = "", priority: int = 0) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        col["description"] = description
    if priority:
        col["priority"] = priority
    return col


AGE = _column("Age", "date", ".metadata.creationTimestamp")


def _crd(kind: str, plural: str, short: str, version: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "llmops"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["llmops"],
            },
            "versions": [{"name": VERSION, "served": True, "storage": True, **version}],
        },
    }


def training_job_crd() -> dict[str, Any]:
    spec_model = TrainingJob.model_fields["spec"].annotation
    status_model = TrainingJob.model_fields["status"].annotation.__args__[0]  # TrainingJobStatus | None
    return _crd(
        "TrainingJob",
        "trainingjobs",
        "tj",
        {
            "schema": {"openAPIV3Schema": _root(spec_model, status_model)},
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                _column("Phase", "string", ".status.phase"),
                _column("Shape", "string", ".status.shape", "nodes x accelerators per node"),
                _column("Progress", "string", ".status.progress.summary", "step/total"),
                _column("Loss", "number", ".status.progress.loss"),
                _column("ETA", "string", ".status.progress.eta", priority=1),
                AGE,
            ],
        },
    )


def inference_endpoint_crd() -> dict[str, Any]:
    spec_model = InferenceEndpoint.model_fields["spec"].annotation
    status_model = InferenceEndpoint.model_fields["status"].annotation.__args__[0]
    return _crd(
        "InferenceEndpoint",
        "inferenceendpoints",
        "ie",
        {
            "schema": {"openAPIV3Schema": _root(spec_model, status_model)},
            "subresources": {
                "status": {},
                "scale": {
                    "specReplicasPath": ".spec.replicas.min",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector",
                },
            },
            "additionalPrinterColumns": [
                _column("Ready", "integer", ".status.readyReplicas"),
                _column("Replicas", "integer", ".status.replicas"),
                _column("Phase", "string", ".status.phase"),
                _column("Model", "string", ".status.model"),
                _column("URL", "string", ".status.url"),
                AGE,
            ],
        },
    )


def all_crds() -> list[dict[str, Any]]:
    return [training_job_crd(), inference_endpoint_crd()]


def crd_files() -> dict[str, str]:
    """File name → YAML text, as committed under manifests/crds/."""
    header = "# Generated from the pydantic models by `llmops crds --write manifests/crds`; do not edit.\n"
    return {
        f"{crd['spec']['names']['plural']}.{GROUP}.yaml": header + yaml.safe_dump(crd, sort_keys=False)
        for crd in all_crds()
    }


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in crd_files().items():
        path = directory / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        written.append(path)
    return written
