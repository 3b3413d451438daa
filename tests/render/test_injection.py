"""User strings can never inject YAML: hostile text changes values, never the shape of the output.

Each free-form string field gets a distinct sentinel, and the spec is rendered twice: once with
the sentinels, once with hostile text (newlines, ``: ``, ``{{ }}``, ``{% %}``, quotes, ``---``,
unicode) in their place. Both renders must have exactly the same key paths, and every value that
held a sentinel must hold its hostile text verbatim.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmops_core import api
from llmops_operator.render import render
from llmops_operator.render.engine import environment, to_object

HOSTILE = (
    'x"\n  injected: true\n---\napiVersion: v1\nkind: Secret\n'
    "{{ 7*7 }} {% if true %}jinja{% endif %} 'single' \"double\" key: value # not a comment "
    "\\n \t\u2028 \u2029 \x85 \ufeff \x7f \x9b \\/ ünïcödé 🚀 &anchor *alias "
    '!!python/object:os.system [list] {map} "}, {"k": 1}'
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
    template = environment().from_string("key: {{ value }}")
    with pytest.raises(TypeError, match="`tojson` filter"):
        template.render(value="a: b")
    text = environment().from_string("key: {{ value | tojson }}").render(value="a\n: b")
    assert text == 'key: !json "\\"a\\\\n: b\\""', "one tagged scalar holding the value's JSON"


@pytest.mark.parametrize("value", [HOSTILE, {"k\u2028": ["\x85", 1e-05]}], ids=["hostile", "nested"])
def test_values_reach_yaml_as_printable_ascii(value: Any) -> None:
    text = environment().from_string("{{ value | tojson }}").render(value=value)
    assert text.isascii() and text.isprintable() and text.startswith('!json "') and text.endswith('"')


def read_back(value: Any) -> Any:
    text = environment().from_string("key: {{ value | tojson }}\n").render(value=value)
    return to_object(text, "test")["key"]


# Where JSON and YAML 1.1 disagree: line breaks YAML folds even inside quotes (NEL, U+2028/9),
# characters it refuses (DEL, C1, BOM, U+FFFE/F, lone surrogates), `\/`, exponent floats YAML 1.1
# reads as strings, keys over YAML's 1024-character limit.
TRICKY = [
    "a\x85b", "a\u2028b", "a\u2029b", "\x7f\x80\x9b\x9f", "\ufeffbom", "\ufffe\uffff", "\\/ </script>",
    "\u0000\b\f\v\x1c\x1d\x1e", "🚀", "lone \ud800 surrogate", {"k" * 2000: "long key"}, 1e-05, 1e20, -2.5e-300, 0.1, 2**70, -0.0, True, None,
    {"a: b": ["c\n- d", {"---": "&x *x"}]}, [], {},
]  # fmt: skip


@pytest.mark.parametrize("value", TRICKY, ids=repr)
def test_json_values_read_back_exactly(value: Any) -> None:
    back = read_back(value)
    assert back == value and type(back) is type(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_reads_back_exactly(value: Any) -> None:
    assert read_back(value) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=repr)
def test_values_json_cannot_carry_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        read_back(value)


TEMPLATES = sorted(resources.files("llmops_operator").joinpath("templates").rglob("*.j2"), key=str)
EXPRESSION = re.compile(r"\{\{.*?\}\}")
# A value is a whole YAML node: a block value (`key: `), a list item (`- `), a flow item (`[`, `, `)
# or a block mapping key at the start of a line; after it the line, its flow item, or its key ends.
BEFORE = re.compile(r"(^\s*|: |- |\[|, )$")
AFTER = re.compile(r"^(:?$|[,\]}])")


def misplaced(line: str) -> list[str]:
    """The expressions of a template line that are not whole YAML nodes or skip ``tojson``."""
    return [
        m.group()
        for m in EXPRESSION.finditer(line)
        if not (BEFORE.search(line[: m.start()]) and AFTER.match(line[m.end() :]))
        or not m.group()[2:-2].strip().endswith("| tojson")
    ]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_value_is_a_whole_node_through_tojson(path: Any) -> None:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        assert not misplaced(line), f"{path.name}:{number}: {misplaced(line)} must be whole YAML nodes"


@pytest.mark.parametrize(
    "line",
    ["  name: prefix-{{ name | tojson }}", "  name: {{ name | tojson }}-suffix", "  name: {{ name }}",
     "  k: [{{ a | tojson }} x]", "  {{ key | tojson }}: {{ value | string }}"],
)  # fmt: skip
def test_the_node_check_catches_misplaced_values(line: str) -> None:
    assert misplaced(line)
    assert not misplaced('  command: ["sleep", {{ s | tojson }}, "/model"]')
