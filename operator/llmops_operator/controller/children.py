"""Ensure one rendered child: adopt it, create it, or patch it back to the rendered state.

Idempotent by construction: names are deterministic, a create that meets "already exists" falls back
to a patch, and a child that already holds everything rendered (the server may add defaults and a
controller may add status; the trainer adds the progress ConfigMap's ``data``) is left alone. Patches
are JSON merge patches of the rendered object, so fields the renderer leaves out are never cleared.
"""

from __future__ import annotations

from collections.abc import Callable
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
    """``child`` (fresh from the renderer, so changed in place) with the owner's namespace, our labels
    and a controller owner reference."""
    meta = child.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["labels"] = {**MANAGED_BY, **(meta.get("labels") or {})}
    meta["ownerReferences"] = [owner_reference(owner)]
    return child


def contains(current: Any, desired: Any, key: str | None = None, parent: str | None = None) -> bool:
    """Whether ``current`` holds everything in ``desired`` (dicts by key, lists item by item), read the
    way the API server writes it back: empty maps and lists it omits, quantities it canonicalises
    (``0.5`` comes back as ``500m``, ``1024Mi`` as ``1Gi``). Without that, such a child would look
    drifted on every pass and be patched (and a Repaired event posted) forever."""
    if isinstance(desired, dict):
        if current is None and not desired:
            return True
        return isinstance(current, dict) and all(
            contains(current.get(k), v, k, key) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if current is None and not desired:
            return True
        return (
            isinstance(current, list)
            and len(current) == len(desired)
            and all(contains(c, d, key, parent) for c, d in zip(current, desired, strict=False))
        )
    if current != desired and (parent in QUANTITY_MAPS or key in QUANTITY_FIELDS):
        return same_quantity(current, desired)
    return current == desired


QUANTITY_MAPS = {"limits", "requests", "capacity"}  # resources.limits/requests, PVC requests.storage
QUANTITY_FIELDS = {"sizeLimit", "averageValue"}  # emptyDir; an HPA target


def same_quantity(a: Any, b: Any) -> bool:
    from kubernetes.utils.quantity import parse_quantity

    try:
        return bool(parse_quantity(a) == parse_quantity(b))
    except (ValueError, TypeError, ArithmeticError):
        return False


def url_of(child: dict[str, Any], named: bool = True) -> str:
    meta = child["metadata"]
    return kube.path(
        child["apiVersion"], kube.plural(child["kind"]), meta["namespace"], meta["name"] if named else None
    )


async def ensure(
    child: dict[str, Any],
    current: dict[str, Any] | None = None,
    look_first: bool = False,
    check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
) -> Action:
    """Make the (adopted) ``child`` exist as rendered.

    ``current`` is what the watch last saw (None: unknown). Unknown children are created first and
    read back only on 409 ("already exists"): one call for a new child, as a bare client would make.
    ``look_first`` GETs instead, for children no watch tells us about (the periodic pass).
    ``check(child, current)`` runs before any patch and may raise to refuse it, however ``current``
    was found (the watch may deliver it while a pass is under way).
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
            cache.remember(current)
    if contains(current, child):
        return "unchanged"
    if check is not None:
        check(child, current)
    cache.remember(await kube.patch(url_of(child), child))
    return "updated"


def ref(child: dict[str, Any]) -> dict[str, str]:
    return {"apiVersion": child["apiVersion"], "kind": child["kind"], "name": child["metadata"]["name"]}
