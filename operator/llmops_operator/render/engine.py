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
And since a value is one scalar whatever it holds, texts that differ only in their values have one
YAML shape, which is parsed once (``to_object``): every parent of a kind renders to a few shapes.
Where a template may put a ``tojson`` expression (a whole node, never inside a larger scalar) is
checked over every template by ``tests/render/test_injection.py``.
"""

from __future__ import annotations

import json
import marshal
import re
from functools import cache
from typing import Any

import jinja2
import orjson
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


Place = tuple[str | int, ...]  # where a value sits in the object: keys and list indices
Found = list[tuple[Place | None, yaml.Node]]  # each value's place (None: a key) and node, in build order


def _build(node: yaml.Node, loader: Any, found: Found, place: Place) -> Any:
    """The node's Python value: values by ``json.loads``, the template's strings, mappings and
    sequences directly, its other scalars (numbers, booleans) by the safe constructor. (The
    constructor's generic walk takes twice as long.) Appends each value to ``found``."""
    tag = node.tag
    if tag == TAG:
        found.append((place, node))
        return json.loads(node.value)
    if tag == _STR:
        return node.value
    if tag == _MAP:
        out = {}
        for k, v in node.value:
            key = _build(k, loader, found, None)
            out[key] = _build(v, loader, found, (*place, key))
        return out
    if tag == _SEQ:
        return [_build(v, loader, found, (*place, i)) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _parse(text: str, source: str) -> tuple[dict[str, Any], Found]:
    loader = _Loader(text)
    found: Found = []
    try:
        obj = _build(loader.get_single_node(), loader, found, ())
    except yaml.YAMLError as e:
        raise ValueError(f"template {source} rendered invalid YAML: {e}") from None
    finally:
        loader.dispose()
    if not isinstance(obj, dict):
        raise ValueError(f"template {source} did not produce a mapping")
    return obj, found


# Texts alike but for their values are one YAML shape: a value is one double-quoted scalar whatever it
# holds. So a shape is parsed once, and a later text of it is its skeleton with the text's values put
# in place (read by ``json.loads`` as in a parse), in under half the time. Keyed by the text between
# the values: a handful of shapes per template, one per combination of its ``if`` branches.
# A value as ``to_json`` prints it: ``!json "``, its JSON with only ``\"`` and ``\\`` escaped, ``"``.
_VALUE = re.compile(r'!json "([^"\\]*(?:\\.[^"\\]*)*)"')
Skeleton = tuple[bytes, list[tuple[Place, int]]]  # the object, and each place's value by text order
_shapes: dict[tuple[str, ...], Skeleton | None] = {}
MAX_SHAPES = 512


def _skeleton(obj: dict[str, Any], found: Found, values: list[str]) -> Skeleton | None:
    """The shape's skeleton, if the parse agrees with what ``_VALUE`` matched: the same values in the
    same order (a YAML alias repeats an earlier one: its node is the anchor's), each at a place of its
    own, none a key or the whole document. Else None: texts of this shape are parsed."""
    nodes = list(dict.fromkeys(node for _, node in found))  # each once, in the order of the text
    index = {id(node): i for i, node in enumerate(nodes)}
    places = [(place, index[id(node)]) for place, node in found if place]
    try:
        if [orjson.loads(f'"{v}"') for v in values] != [node.value for node in nodes]:
            return None
        if len(places) < len(found) or len({place for place, _ in places}) < len(places):
            return None
        if any(_at(obj, place) != json.loads(nodes[i].value) for place, i in places):  # a later key won
            return None
        return marshal.dumps(obj), places
    except ValueError:  # matched text that is no value of ours; a template scalar marshal cannot write
        return None


def _at(obj: Any, place: Place | list[str | int]) -> Any:
    for step in place:
        obj = obj[step]
    return obj


def to_object(text: str, source: str) -> dict[str, Any]:
    """Parse the text of one rendered template (``source`` names it in errors)."""
    parts = _VALUE.split(text)
    shape, values = tuple(parts[0::2]), parts[1::2]
    known = _shapes.get(shape)
    if known is None:
        obj, found = _parse(text, source)
        if shape not in _shapes:
            if len(_shapes) >= MAX_SHAPES:
                _shapes.clear()
            _shapes[shape] = _skeleton(obj, found, values)
        return obj
    skeleton, places = known
    obj = marshal.loads(skeleton)
    texts = [orjson.loads(f'"{v}"') for v in values]
    for (*path, last), i in places:
        _at(obj, path)[last] = json.loads(texts[i])
    return obj


def render_template(template: str, **context: Any) -> dict[str, Any]:
    """Render one template to one object."""
    return to_object(environment().get_template(template).render(**context), template)
