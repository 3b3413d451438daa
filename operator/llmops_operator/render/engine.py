"""The Jinja environment: templates hold YAML shape, and every value enters as JSON.

JSON is a subset of YAML, so a JSON-encoded string can hold newlines, ``: ``, ``{{``, ``---`` or
quotes and still parse as exactly one scalar. ``finalize`` refuses any expression that did not pass
through the ``j`` filter, so a template cannot forget to encode (a test renders hostile strings).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import jinja2
import yaml


class Encoded(str):
    """Text produced by the ``j`` filter; the only thing ``finalize`` lets into the output."""


# Characters YAML reads as line breaks even inside quotes (and folds), or refuses as non-printable;
# JSON already escapes the C0 controls. Escaping all non-ASCII instead would split emoji into
# surrogate pairs, which YAML parsers do not recombine.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def to_json(value: Any) -> Encoded:
    text = json.dumps(value, ensure_ascii=False, sort_keys=False)
    return Encoded(_YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


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
    )
    env.filters["j"] = to_json
    return env


def render_template(template: str, **context: Any) -> dict[str, Any]:
    """Render one template to one object."""
    text = environment().get_template(template).render(**context)
    obj = yaml.safe_load(text)
    if not isinstance(obj, dict):
        raise ValueError(f"template {template} did not produce a mapping")
    return obj
