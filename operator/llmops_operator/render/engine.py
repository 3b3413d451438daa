"""The Jinja environment: templates hold YAML shape; values never pass through YAML at all.

Inside :func:`render_template` the ``j`` filter does not print a value: it records the value's JSON and
prints a numbered placeholder. The YAML text is then the template's own text plus placeholders, so
nothing a user writes (newlines, ``: ``, ``---``, ``&anchor``, U+2028, ``!!python/object``) can change
the document's shape, by construction. After parsing, each placeholder is replaced by its value read
back with ``json.loads``. Because the text depends only on the template's control flow, its parse is
cached: renders after the first cost a Jinja pass and a walk, not a YAML parse (most of the cost before).

``finalize`` refuses any expression that did not pass through ``j``, so a template cannot forget it.
Outside a render (a template string rendered directly) ``j`` prints the JSON itself, escaped for YAML.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import cache, lru_cache
from typing import Any

import jinja2
import yaml


class Encoded(str):
    """Text produced by the ``j`` filter; the only thing ``finalize`` lets into the output."""


# Characters YAML reads as line breaks even inside quotes (and folds), or refuses as non-printable;
# JSON already escapes the C0 controls. Only the direct-render fallback needs this.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")

# libyaml's safe loader parses the same YAML 1.1 six times faster than PyYAML's pure-Python one.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The JSON of each value of the render in progress, in order; placeholder n stands for values[n].
# Only template text and placeholders reach YAML, so no template literal may look like one.
_values: ContextVar[list[str] | None] = ContextVar("values", default=None)
_PLACEHOLDER = re.compile(r"@llmops:(\d+)@")


def to_json(value: Any) -> Encoded:
    text = json.dumps(value, ensure_ascii=False)
    values = _values.get()
    if values is None:
        return Encoded(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
    values.append(text)
    return Encoded(f'"@llmops:{len(values) - 1}@"')


def _finalize(value: Any) -> str:
    if not isinstance(value, Encoded):
        raise TypeError(f"template expression {value!r} must go through the `j` filter")
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
    env.filters["j"] = to_json
    return env


@lru_cache(maxsize=512)
def _skeleton(text: str) -> Any:
    """The parsed document of one control-flow path of one template (shared: never mutated)."""
    return yaml.load(text, Loader=_LOADER)


def _fill(node: Any, values: list[str]) -> Any:
    """A fresh copy of ``node`` with each placeholder replaced by its value."""
    if isinstance(node, str):
        m = _PLACEHOLDER.fullmatch(node)
        if m:
            return json.loads(values[int(m.group(1))])
        if "@llmops:" in node:  # `j` used inside a larger scalar: the value would be lost
            raise ValueError(f"a template uses `j` inside the scalar {node!r}; it must be the whole value")
        return node
    if isinstance(node, dict):
        return {_fill(k, values): _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def render_template(template: str, **context: Any) -> dict[str, Any]:
    """Render one template to one object."""
    values: list[str] = []
    token = _values.set(values)
    try:
        text = environment().get_template(template).render(**context)
    finally:
        _values.reset(token)
    obj = _fill(_skeleton(text), values)
    if not isinstance(obj, dict):
        raise ValueError(f"template {template} did not produce a mapping")
    return obj
