"""The Jinja environment: templates hold YAML shape, and every value enters the text as JSON.

A value is printed only through the ``tojson`` filter (ours: Jinja's built-in one escapes for HTML,
not YAML), and ``finalize`` refuses any expression that did not pass through it, so a template cannot
forget it. The filter prints the value's JSON as one YAML double-quoted scalar tagged ``!json``
(``!json "{\\"a\\": 1}"``), which the loader decodes with ``json.loads``. So a value is always exactly
one YAML node, whatever a user writes (newlines, ``: ``, ``---``, ``&anchor``, ``!!python/object``),
and the text YAML sees between the quotes is printable ASCII with no escapes but ``\\"`` and ``\\\\``.
That also takes every place where JSON and YAML 1.1 read the same text differently out of play: line
breaks YAML folds even inside quotes (NEL, U+2028, U+2029), characters it refuses (DEL, C1 controls,
U+FEFF, lone surrogates), ``\\/``, floats such as ``1e-05`` (a string to YAML 1.1) and YAML's
1024-character limit on keys. NaN and infinity, which JSON (and Kubernetes) cannot carry, are refused.

Values as single scalars also keep the YAML small: parsing it was most of a render's time, and a
JSON value decoded by ``json.loads`` costs a fraction of the same value parsed node by node as YAML.
Where a template may put a ``tojson`` expression (a whole node, never inside a larger scalar) is
checked over every template by ``tests/render/test_injection.py``.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jinja2
import yaml

TAG = "!json"


class Encoded(str):
    """Text produced by the ``tojson`` filter; the only thing ``finalize`` lets into the output."""


def to_json(value: Any) -> Encoded:
    """``value`` as one YAML scalar that reads back as exactly ``value``."""
    return Encoded(f"{TAG} {json.dumps(json.dumps(value, allow_nan=False))}")


def _finalize(value: Any) -> str:
    if not isinstance(value, Encoded):
        raise TypeError(f"template expression {value!r} must go through the `tojson` filter")
    return value


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmops_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates ship with the package; no stat() per render
    )
    env.filters["tojson"] = to_json
    return env


# libyaml's safe loader parses six times faster than PyYAML's pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{t}" for t in ("str", "map", "seq"))


def _build(node: yaml.Node, loader: Any) -> Any:
    """The node's Python value: values by ``json.loads``, the template's strings, mappings and
    sequences directly, its other scalars (numbers, booleans) by the safe constructor. (The
    constructor's generic walk takes twice as long.)"""
    tag = node.tag
    if tag == TAG:
        return json.loads(node.value)
    if tag == _STR:
        return node.value
    if tag == _MAP:
        return {_build(k, loader): _build(v, loader) for k, v in node.value}
    if tag == _SEQ:
        return [_build(v, loader) for v in node.value]
    return loader.construct_object(node, deep=True)


def to_object(text: str, source: str) -> dict[str, Any]:
    """Parse the text of one rendered template (``source`` names it in errors)."""
    loader = _Loader(text)
    try:
        obj = _build(loader.get_single_node(), loader)
    except yaml.YAMLError as e:
        raise ValueError(f"template {source} rendered invalid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(obj, dict):
        raise ValueError(f"template {source} did not produce a mapping")
    return obj


def render_template(template: str, **context: Any) -> dict[str, Any]:
    """Render one template to one object."""
    return to_object(environment().get_template(template).render(**context), template)
