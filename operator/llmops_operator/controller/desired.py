"""The children a parent should have, rendered once per version of what the render reads.

A parent is reconciled on every event of every child, but its children depend only on the parent's
identity and spec, the operator configuration and (for ``fromTrainingJob``) the resolved model; not on
its labels or annotations, which kopf rewrites on every handled change (a test holds the renderer to
that). Rendering is the costliest step of our own code in a pass, so passes that change none of
those inputs (nearly all of them) reuse the last result. The lists returned are shared: callers must
not mutate them.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llmops_core.config import OperatorConfig

MAX_ENTRIES = 4096  # ~7 children each; a few MiB at most
_entries: OrderedDict[str, tuple[OperatorConfig, list[dict[str, Any]]]] = OrderedDict()


def key_of(body: dict[str, Any], resolved: str | None) -> str:
    meta = body.get("metadata") or {}
    return json.dumps(
        [
            body.get("apiVersion"),
            body.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
            meta.get("uid"),
            body.get("spec"),
            resolved,
        ],
        sort_keys=True,
    )


def children(
    body: dict[str, Any],
    config: OperatorConfig,
    build: Callable[[], list[dict[str, Any]]],
    resolved: str | None = None,
) -> list[dict[str, Any]]:
    """``build()``'s result for this version of ``body``, from the cache when the inputs are unchanged."""
    key = key_of(body, resolved)
    hit = _entries.get(key)
    if hit is not None and hit[0] is config:
        _entries.move_to_end(key)
        return hit[1]
    rendered = build()
    _entries[key] = (config, rendered)
    if len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return rendered


def clear() -> None:
    _entries.clear()
