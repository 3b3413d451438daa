"""A rendered text's YAML shape is parsed once (render/engine.py): later texts of the shape are its
skeleton with their values put in place, and must read back exactly as a parse of them would."""

from __future__ import annotations

from typing import Any

import pytest

from llmops_operator.render import engine
from tests.manifests import example_docs
from tests.render.test_examples import rendered
from tests.render.test_injection import HOSTILE, TRICKY


@pytest.fixture(autouse=True)
def no_shapes() -> Any:
    engine._shapes.clear()
    yield
    engine._shapes.clear()


def parsed_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, a text whose shape was seen must not be parsed."""

    def refuse(text: str, source: str) -> Any:
        raise AssertionError(f"{source} parsed again")

    monkeypatch.setattr(engine, "_parse", refuse)


def renamed(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {**doc, "metadata": {**doc["metadata"], "name": name}}


@pytest.mark.parametrize(("name", "doc"), example_docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_example_renders_alike_from_its_shapes(
    name: str, doc: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every template's shapes are kept (the PyTorchJob's Workers repeat the Master's pod through a
    YAML alias), and another resource's objects built from them equal its parse."""
    rendered(doc)
    assert engine._shapes and None not in engine._shapes.values()
    expected = rendered(renamed(doc, "other"))  # parsed: a new name changes no shape
    engine._shapes.clear()
    rendered(renamed(doc, "first"))
    parsed_only(monkeypatch)
    assert rendered(renamed(doc, "other")) == expected


def template(value: Any) -> str:
    return engine.environment().from_string("a: {{ v | tojson }}\nb: [x, {{ v | tojson }}]\n").render(v=value)


@pytest.mark.parametrize("value", [HOSTILE, *TRICKY], ids=repr)
def test_tricky_values_read_back_from_a_shape_as_from_a_parse(
    value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected, _ = engine._parse(template(value), "test")
    engine.to_object(template("seen first"), "test")
    parsed_only(monkeypatch)
    back = engine.to_object(template(value), "test")
    assert back == expected == {"a": value, "b": ["x", value]}
    assert back["a"] is not back["b"][1] or not isinstance(value, (dict, list))  # no shared objects


@pytest.mark.parametrize(
    "text",
    [
        "{{ v | tojson }}: 1\n",  # a value as a key
        "a: {{ v | tojson }}\na: 2\n",  # a later key takes the value's place
        "a: '!json \"{{ 1 | tojson }}\"'\nb: {{ v | tojson }}\n",  # the pattern inside a template string
    ],
)
def test_shapes_a_skeleton_cannot_carry_are_parsed_each_time(text: str) -> None:
    first, second = (engine.environment().from_string(text).render(v=v) for v in ("one", "two"))
    assert engine.to_object(second, "t") == engine._parse(second, "t")[0]
    engine._shapes.clear()
    engine.to_object(first, "t")
    assert list(engine._shapes.values()) == [None]
    assert engine.to_object(second, "t") == engine._parse(second, "t")[0]
