"""User strings can never inject YAML: hostile text changes values, never the shape of the output.

Each free-form string field gets a distinct sentinel, and the spec is rendered twice: once with
the sentinels, once with hostile text (newlines, ``: ``, ``{{ }}``, ``{% %}``, quotes, ``---``,
unicode) in their place. Both renders must have exactly the same key paths, and every value that
held a sentinel must hold its hostile text verbatim.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmops_core import api
from llmops_operator.render import render

HOSTILE = (
    'x"\n  injected: true\n---\napiVersion: v1\nkind: Secret\n'
    "{{ 7*7 }} {% if true %}jinja{% endif %} 'single' \"double\" key: value # not a comment "
    "\\n \t tab \u2028 line-sep \u2029 para \x85 nel \ufeff bom \x7f del ünïcödé 🚀 &anchor *alias !!python/object:os.system [list] {map}"
)


def tj_spec(s: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "job", "namespace": "ns"},
        "spec": {
            "image": s("image"),
            "model": {"base": "/models/" + s("base"), "lora": {"targetModules": [s("target")]}},
            "data": {"train": "/data/" + s("train"), "format": "jsonl", "textField": s("field")},
            "resources": {"accelerator": "nvidia-gpu"},
            "checkpoint": {"existingClaim": s("claim"), "s3": "s3://bucket/" + s("s3")},
            "output": {"location": "s3://bucket/" + s("out")},
            "scheduling": {
                "nodeSelector": {"pool": s("pool")},
                "tolerations": [{"key": "team", "value": s("toleration")}],
                "priorityClassName": s("priority"),
            },
            "env": [{"name": "NOTE", "value": s("env")}],
            "serviceAccountName": s("sa"),
        },
    }


def ie_spec(s: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "ep", "namespace": "ns"},
        "spec": {
            "model": {"location": "/models/" + s("location"), "name": s("served")},
            "image": s("image"),
            "replicas": {"min": 2, "max": 3},
            "server": {"extraArgs": [s("arg")], "apiKeySecret": {"name": s("secret"), "key": s("key")}},
            "scheduling": {"nodeSelector": {"pool": s("pool")}, "priorityClassName": s("priority")},
            "env": [{"name": "NOTE", "value": s("env")}],
            "serviceAccountName": s("sa"),
        },
    }


def paths(node: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten to {path: leaf}; the ConfigMap's job.yaml is parsed, since it is YAML inside YAML."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "job.yaml":
                v = yaml.safe_load(v)
            out.update(paths(v, f"{prefix}/{k}"))
        return out
    if isinstance(node, list):
        return {p: v for i, item in enumerate(node) for p, v in paths(item, f"{prefix}[{i}]").items()}
    return {prefix: node}


@pytest.mark.parametrize("make", [tj_spec, ie_spec], ids=["TrainingJob", "InferenceEndpoint"])
def test_hostile_strings_keep_the_shape(make: Any) -> None:
    fields: list[str] = []

    def sentinel(field: str) -> str:
        fields.append(field)
        return f"SENTINEL{len(fields) - 1}X"

    safe = render(api.load(make(sentinel)))
    hostile_by_sentinel = {f"SENTINEL{i}X": f"{HOSTILE} #{i}" for i in range(len(fields))}
    texts = iter(hostile_by_sentinel.values())  # make() asks for the fields in the same order
    hostile = render(api.load(make(lambda field: next(texts))))

    assert [o["kind"] for o in hostile] == [o["kind"] for o in safe]
    for before, after in zip(safe, hostile, strict=True):
        flat_before, flat_after = paths(before), paths(after)
        assert flat_after.keys() == flat_before.keys(), f"{before['kind']}: the hostile text changed the keys"
        for path, value in flat_before.items():
            expected = value
            if isinstance(value, str):
                for marker, text in hostile_by_sentinel.items():
                    expected = expected.replace(marker, text)
            assert flat_after[path] == expected, f"{before['kind']} {path}"
    seen = "".join(str(v) for o in hostile for v in paths(o).values())
    assert sum(text in seen for text in hostile_by_sentinel.values()) == len(hostile_by_sentinel), (
        "every hostile string must reach the output verbatim somewhere"
    )


def test_templates_cannot_emit_unencoded_values() -> None:
    from llmops_operator.render.engine import environment

    template = environment().from_string("key: {{ value }}")
    with pytest.raises(TypeError, match="`j` filter"):
        template.render(value="a: b")
    assert environment().from_string("key: {{ value | j }}").render(value="a\n: b") == 'key: "a\\n: b"'


def test_values_never_reach_yaml_and_placeholders_cannot_be_forged() -> None:
    """Inside a render, ``j`` prints a placeholder and the value comes back from its JSON after parsing:
    a user string shaped like a placeholder stays a string, and no template text can be mistaken for one."""
    from importlib import resources

    from llmops_operator.render.engine import _PLACEHOLDER, render_template

    forged = "@llmops:0@"
    obj = render_template(
        "training/serviceaccount.yaml.j2", name=forged, namespace="ns", labels={"a": forged}
    )
    assert obj["metadata"]["name"] == forged and obj["metadata"]["labels"] == {"a": forged}
    for path in resources.files("llmops_operator").joinpath("templates").rglob("*.j2"):
        assert not _PLACEHOLDER.search(path.read_text()), f"{path}: template text looks like a placeholder"


def test_j_inside_a_larger_scalar_is_refused() -> None:
    from llmops_operator.render import engine

    template = engine.environment().from_string("kind: X\nname: prefix-{{ name | j }}\n")
    values: list[str] = []
    token = engine._values.set(values)
    try:
        text = template.render(name="a")
    finally:
        engine._values.reset(token)
    with pytest.raises(ValueError, match="whole value"):
        engine._fill(engine._skeleton(text), values)
