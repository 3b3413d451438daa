"""What the watches last saw, keyed by (apiVersion, kind, namespace, name): an informer, simplified.

Reconciles read parents and children from here instead of GETting them; a miss falls back to a GET.
A stale entry is harmless: the worst it causes is a create that meets 409 or an idempotent patch.
"""

from __future__ import annotations

from typing import Any

Key = tuple[str, str, str, str]
_store: dict[Key, dict[str, Any]] = {}
flags: dict[str, bool] = {}  # facts learnt once per run, e.g. that the PyTorchJob CRD is served


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""))


# Kinds the informers watch (see ``informer.CHILDREN``): their cache entries follow the cluster.
WATCHED = {
    "PyTorchJob",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Service",
    "ConfigMap",
    "Pod",
}


def current(child: dict[str, Any], verify: bool) -> dict[str, Any] | None:
    """The cached state of a child, unless a verifying pass must look for itself (unwatched kinds)."""
    if verify and child.get("kind") not in WATCHED:
        return None
    return _store.get(key_of(child))


def remember(obj: dict[str, Any] | None) -> None:
    if obj and obj.get("kind") and (obj.get("metadata") or {}).get("name"):
        _store[key_of(obj)] = obj


def forget(obj: dict[str, Any]) -> None:
    _store.pop(key_of(obj), None)


def seen(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return _store.get((api_version, kind, namespace, name))


def of_kind(api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    return [
        obj
        for (av, k, ns, _), obj in list(_store.items())
        if av == api_version and k == kind and namespace in (None, ns)
    ]


def observe(event: dict[str, Any]) -> bool:
    """Feed one watch event; False when it tells nothing new (e.g. the echo of our own create)."""
    obj = event.get("object") or {}
    if event.get("type") == "DELETED":
        forget(obj)
        return True
    if _store.get(key_of(obj)) == obj:
        return False
    remember(obj)
    return True


def clear() -> None:
    _store.clear()
    flags.clear()
