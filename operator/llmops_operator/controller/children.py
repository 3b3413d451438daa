"""Ensure one rendered child: create it, or server-side apply it back to the rendered state.

Idempotent by construction: names are deterministic, a create that meets "already exists" reads the
object and continues with it. We never take over an object we do not own: a same-named object without
our controller reference (a user's Service, say) raises :class:`NotOurs`, and the parent reports it.

A child is re-applied only when it no longer holds what we render. "Holds" reads the object the way
other writers leave it: maps by key, lists of named items by name, other lists of objects item by
item in any order, so a toleration Kueue appends or a sidecar a webhook injects is not drift. A spec
or configuration change changes the ``llmops.dev/rendered`` hash we stamp on every child, so that
always counts. Applies use server-side apply with our field manager: they set our fields and leave
everyone else's alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal
from typing import Any, Literal

from . import cache, kube

Action = Literal["created", "updated", "unchanged"]
MANAGED_BY = {"app.kubernetes.io/managed-by": "llmops-operator"}
RENDERED = "llmops.dev/rendered"


class NotOurs(Exception):
    """A same-named object exists that this parent does not own."""

    def __init__(self, child: dict[str, Any]) -> None:
        self.ref = f"{child['kind']}/{child['metadata']['name']}"
        super().__init__(
            f"{self.ref} already exists and is not owned by this resource; "
            "delete or rename it, and it will be created"
        )


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
    """``child`` (fresh from the renderer, so changed in place) with the owner's namespace, our labels,
    a controller owner reference and the hash of what was rendered."""
    meta = child.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["labels"] = {**MANAGED_BY, **(meta.get("labels") or {})}
    meta["ownerReferences"] = [owner_reference(owner)]
    digest = hashlib.sha256(json.dumps(child, sort_keys=True).encode()).hexdigest()[:16]
    meta["annotations"] = {**(meta.get("annotations") or {}), RENDERED: digest}
    return child


def owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == owner_uid for r in refs)


def contains(current: Any, desired: Any, key: str | None = None, parent: str | None = None) -> bool:
    """Whether ``current`` holds everything in ``desired``, read the way the API server writes it back
    (empty maps and lists omitted, quantities canonicalised: ``0.5`` is ``500m``) and leaving room for
    what other writers add (extra keys, extra list items)."""
    if isinstance(desired, dict):
        if current is None and not desired:
            return True
        return isinstance(current, dict) and all(
            contains(current.get(k), v, k, key) for k, v in desired.items()
        )
    if isinstance(desired, list):
        if current is None and not desired:
            return True
        if not isinstance(current, list):
            return False
        if not all(isinstance(d, dict) for d in desired):  # args, command: exactly ours
            return len(current) == len(desired) and all(
                contains(c, d, key, parent) for c, d in zip(current, desired, strict=True)
            )
        return all(_has_item(current, d, key) for d in desired)
    if current != desired and (parent in QUANTITY_MAPS or key in QUANTITY_FIELDS):
        return same_quantity(current, desired)
    return current == desired


def _has_item(current: list[Any], desired: dict[str, Any], key: str | None) -> bool:
    if "name" in desired:
        match = [c for c in current if isinstance(c, dict) and c.get("name") == desired["name"]]
        return len(match) == 1 and contains(match[0], desired, key)
    return any(contains(c, desired, key) for c in current)


QUANTITY_MAPS = {"limits", "requests", "capacity"}  # resources.limits/requests, PVC requests.storage
QUANTITY_FIELDS = {"sizeLimit", "averageValue"}  # emptyDir; an HPA target


SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
SUFFIXES |= {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1, "k": 10**3, "M": 10**6}
SUFFIXES |= {"G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|([a-zA-Z]*))")


def quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity ("500m", "1Gi", "1e3", 2) as a number. (Written here because
    the ``kubernetes`` package's parser costs its whole client in memory; see ``connection``.)"""
    match = QUANTITY.fullmatch(str(value).strip())
    if not match or (match.group(3) or "") not in SUFFIXES:
        raise ValueError(f"not a quantity: {value!r}")
    number, exponent, suffix = match.groups()
    return Decimal(number + (exponent or "")) * SUFFIXES[suffix or ""]


def same_quantity(a: Any, b: Any) -> bool:
    try:
        return quantity(a) == quantity(b)
    except ValueError:
        return False


def url_of(child: dict[str, Any], named: bool = True) -> str:
    meta = child["metadata"]
    return kube.path(
        child["apiVersion"], kube.plural(child["kind"]), meta["namespace"], meta["name"] if named else None
    )


async def ensure(
    child: dict[str, Any],
    current: dict[str, Any] | None,
    *,
    verify: bool = False,
    create_only: bool = False,
    initial: tuple[str, ...] = (),
) -> tuple[Action, dict[str, Any]]:
    """Make the (adopted) ``child`` exist as rendered; return what was done and the object as it is.

    ``current`` is what the watch last saw (None: unknown). Unknown children are created first and
    read back only on 409: one call for a new child, as a bare client would make. ``verify`` reads
    first instead, for children no watch tells us about (the periodic pass). ``create_only`` children
    (a started PyTorchJob, a claim) are never changed once they exist. The ``initial`` keys of
    ``spec`` (an autoscaled Deployment's ``replicas``) are sent with the create only: then they belong
    to another controller, so they are neither compared nor applied (an apply that omits them leaves
    them alone: they are the create's, then the controller's; :func:`hand_over` covers the one case
    where an earlier apply set them).
    """
    if current is None and verify:
        current = await kube.get(url_of(child))
    if current is None:
        try:
            with cache.creating(child):
                created = await kube.create(url_of(child, named=False), child)
            cache.remember(created)
            return "created", created
        except kube.ApiError as e:
            if e.status != 409:
                raise
            current = await kube.get(url_of(child))
            if current is None:  # a conflict that was not there: try again on the next pass
                raise
    owner_uid = child["metadata"]["ownerReferences"][0]["uid"]
    if not owned_by(current, owner_uid):
        raise NotOurs(child)
    cache.remember(current)
    if initial:
        child = {**child, "spec": {k: v for k, v in child["spec"].items() if k not in initial}}
    if create_only or contains(current, child):
        return "unchanged", current
    if initial:
        await hand_over(url_of(child), initial)
    applied = await kube.apply(url_of(child), child)
    cache.remember(applied)
    return "updated", applied


HANDOVER = f"{kube.FIELD_MANAGER}-handover"


async def hand_over(url: str, keys: tuple[str, ...]) -> None:
    """Keep the ``spec`` ``keys`` an earlier apply of ours set (a fixed-size endpoint's ``replicas``,
    before autoscaling was turned on) at their values through the apply that stops setting them,
    which would otherwise remove them (the Deployment default is 1 replica). As Kubernetes documents
    for handing ``replicas`` to an HPA: apply them once, at their live values, under another field
    manager, which holds them until their new owner changes them. Read fresh: the cache keeps no
    ``managedFields``; this runs only before such an apply, which is rare."""
    live = await kube.get(url)
    if live is None:
        return
    ours = [
        ((m.get("fieldsV1") or {}).get("f:spec") or {})
        for m in live["metadata"].get("managedFields") or []
        if m.get("manager") == kube.FIELD_MANAGER and m.get("operation") == "Apply"
    ]
    owned = [k for k in keys if k in (live.get("spec") or {}) and any(f"f:{k}" in f for f in ours)]
    if owned:
        meta = {"name": live["metadata"]["name"], "namespace": live["metadata"]["namespace"]}
        body = {"apiVersion": live["apiVersion"], "kind": live["kind"], "metadata": meta}
        await kube.apply(url, {**body, "spec": {k: live["spec"][k] for k in owned}}, manager=HANDOVER)


def ref(child: dict[str, Any]) -> dict[str, str]:
    return {"apiVersion": child["apiVersion"], "kind": child["kind"], "name": child["metadata"]["name"]}
