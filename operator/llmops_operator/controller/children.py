"""Ensure one rendered child: adopt it, create it, or patch it back to the rendered state.

Idempotent by construction: names are deterministic, a create that meets "already exists" falls back
to a patch, and a child that already holds everything rendered (the server may add defaults and a
controller may add status; the trainer adds the progress ConfigMap's ``data``) is left alone. Patches
are JSON merge patches of the rendered object, so fields the renderer leaves out are never cleared.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from . import cache, kube

Action = Literal["created", "updated", "unchanged"]
MANAGED_BY = {"app.kubernetes.io/managed-by": "llmops-operator"}


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt(child: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``child`` with the owner's namespace, our labels and a controller owner reference."""
    child = copy.deepcopy(child)
    meta = child.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["labels"] = {**MANAGED_BY, **(meta.get("labels") or {})}
    meta["ownerReferences"] = [owner_reference(owner)]
    return child


def contains(current: Any, desired: Any) -> bool:
    """Whether ``current`` holds everything in ``desired`` (dicts by key, lists item by item)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(contains(current.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d) for c, d in zip(current, desired, strict=False))
        )
    return current == desired


def url_of(child: dict[str, Any], named: bool = True) -> str:
    meta = child["metadata"]
    return kube.path(
        child["apiVersion"], kube.plural(child["kind"]), meta["namespace"], meta["name"] if named else None
    )


async def ensure(
    child: dict[str, Any], current: dict[str, Any] | None = None, look_first: bool = False
) -> Action:
    """Make the (adopted) ``child`` exist as rendered.

    ``current`` is what the watch last saw (None: unknown). Unknown children are created first and
    read back only on 409 ("already exists"): one call for a new child, as a bare client would make.
    ``look_first`` GETs instead, for children no watch tells us about (the periodic pass).
    """
    if current is None and look_first:
        current = await kube.get(url_of(child))
    if current is None:
        try:
            cache.remember(await kube.create(url_of(child, named=False), child))
            return "created"
        except kube.ApiError as e:
            if e.status != 409:
                raise
            current = await kube.get(url_of(child))
            if current is None:  # a conflict that was not there: try again on the next pass
                raise
    if contains(current, child):
        return "unchanged"
    cache.remember(await kube.patch(url_of(child), child))
    return "updated"


def ref(child: dict[str, Any]) -> dict[str, str]:
    return {"apiVersion": child["apiVersion"], "kind": child["kind"], "name": child["metadata"]["name"]}
