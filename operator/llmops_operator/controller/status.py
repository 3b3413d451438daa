"""Write a parent's status through the status subresource, only when something changed."""

from __future__ import annotations

from typing import Any

from . import cache, kube
from .conditions import set_condition


def parent_url(body: dict[str, Any], sub: str = "") -> str:
    meta = body["metadata"]
    return kube.path(body["apiVersion"], kube.plural(body["kind"]), meta["namespace"], meta["name"], sub)


def with_conditions(
    old: dict[str, Any], generation: int | None, **conds: tuple[bool | str, str, str]
) -> list[dict[str, Any]]:
    """``old``'s conditions with each ``Type=(status, reason, message)`` set."""
    out = list(old.get("conditions") or [])
    for type_, (status, reason, message) in conds.items():
        out = set_condition(out, type_, status, reason, message, generation)
    return out


async def write(body: dict[str, Any], new: dict[str, Any]) -> bool:
    """Merge ``new`` into ``status``; no call when every key already holds that value."""
    old = body.get("status") or {}
    changes = {k: v for k, v in new.items() if old.get(k) != v}
    if not changes:
        return False
    result = await kube.patch(parent_url(body, "status"), {"status": changes})
    if isinstance(result, dict) and result.get("kind"):
        cache.remember(result)
    return True
