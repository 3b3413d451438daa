"""What the watches last saw, keyed by (apiVersion, kind, namespace, name): an informer, simplified.

Reconciles read parents and children from here instead of GETting them; a miss falls back to a GET.
A stale entry is harmless: the worst it causes is a create that meets 409 or an idempotent patch.

The cache holds every parent and child the operator manages, so it decides the operator's memory.
Each entry keeps only what the controller reads (:func:`compact`: never ``managedFields``, which on a
real API server outweighs the rest of the object) and is stored serialised, decoded on each read:
a Deployment from a real API server is 29 KiB as Python objects plus 37 KiB of managedFields, and
3.8 KiB here (bench/operator_bench.py, docs/benchmarks-operator.md). Bytes are not tracked by the
garbage collector either. Every read returns a fresh copy, which its caller may change. ``marshal``
is the fastest codec for plain JSON data (decoding a Deployment takes ~20 us); its bytes never leave
this process.
"""

from __future__ import annotations

import marshal
from typing import Any

Key = tuple[str, str, str, str]
Bucket = tuple[str, str, str]  # (apiVersion, kind, namespace)
# name -> (the parent it belongs to as "label=value", or "", the compacted object, serialised)
_store: dict[Bucket, dict[str, tuple[str, bytes]]] = {}
flags: dict[str, bool] = {}  # facts learnt once per run, e.g. that the PyTorchJob CRD is served
PARENT_LABELS = ("llmops.dev/trainingjob", "llmops.dev/inferenceendpoint")


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


# Children whose status no pass reads (the endpoint mirrors its Deployment, not its autoscaler):
# without their status and resourceVersion in the cache, the controllers' status updates, one or two
# per object as the cluster settles, leave the entry as it was and start no pass (``observe``).
STATUS_UNREAD = {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"}


def compact(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without what no reconcile reads: ``metadata.managedFields`` (other writers' field
    ownership), a Pod's spec (retries read its labels and status), a PyTorchJob's spec beyond
    ``runPolicy`` (created once, never compared; only ``runPolicy`` follows the TrainingJob), and the
    status and resourceVersion of :data:`STATUS_UNREAD` kinds."""
    out = dict(obj)
    kind, spec = out.get("kind"), out.get("spec")
    dropped = ("managedFields", "resourceVersion") if kind in STATUS_UNREAD else ("managedFields",)
    meta = out.get("metadata")
    if isinstance(meta, dict) and any(k in meta for k in dropped):
        out["metadata"] = {k: v for k, v in meta.items() if k not in dropped}
    if kind in STATUS_UNREAD:
        out.pop("status", None)
    if kind == "Pod":
        out.pop("spec", None)
    elif kind == "PyTorchJob" and isinstance(spec, dict):
        out["spec"] = {"runPolicy": spec["runPolicy"]} if "runPolicy" in spec else {}
    return out


def _parent(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return next((f"{label}={labels[label]}" for label in PARENT_LABELS if label in labels), "")


def _encode(obj: dict[str, Any]) -> tuple[str, bytes]:
    return _parent(obj), marshal.dumps(compact(obj))


def current(child: dict[str, Any], verify: bool) -> dict[str, Any] | None:
    """The cached state of a child, unless a verifying pass must look for itself (unwatched kinds)."""
    if verify and child.get("kind") not in WATCHED:
        return None
    return seen(*key_of(child))


def remember(obj: dict[str, Any] | None) -> None:
    if obj and obj.get("kind") and (obj.get("metadata") or {}).get("name"):
        av, kind, ns, name = key_of(obj)
        _store.setdefault((av, kind, ns), {})[name] = _encode(obj)


def forget(obj: dict[str, Any] | Key) -> None:
    av, kind, ns, name = obj if isinstance(obj, tuple) else key_of(obj)
    bucket = _store.get((av, kind, ns))
    if bucket is not None:
        bucket.pop(name, None)


def seen(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    entry = _store.get((api_version, kind, namespace), {}).get(name)
    return None if entry is None else marshal.loads(entry[1])


def keys(api_version: str, kind: str, namespace: str | None = None) -> list[Key]:
    """The keys of a kind's entries (in one namespace, or all), without decoding them."""
    return [
        (av, k, ns, name)
        for (av, k, ns), bucket in list(_store.items())
        if av == api_version and k == kind and namespace in (None, ns)
        for name in list(bucket)
    ]


def of_kind(
    api_version: str, kind: str, namespace: str | None = None, parent: str | None = None
) -> list[dict[str, Any]]:
    """A kind's entries (in one namespace, or all); with ``parent`` (``"label=value"``, a label of
    :data:`PARENT_LABELS`), only those that belong to it, found without decoding the rest."""
    return [
        marshal.loads(blob)
        for (av, k, ns), bucket in list(_store.items())
        if av == api_version and k == kind and namespace in (None, ns)
        for of, blob in list(bucket.values())
        if parent in (None, of)
    ]


def observe(event: dict[str, Any]) -> bool:
    """Feed one watch event; False when it tells nothing new (e.g. the echo of our own create)."""
    obj = event.get("object") or {}
    if event.get("type") == "DELETED":
        forget(obj)
        return True
    av, kind, ns, name = key_of(obj)
    bucket = _store.setdefault((av, kind, ns), {})
    entry = _encode(obj)
    if bucket.get(name) == entry:
        return False
    bucket[name] = entry
    return True


def size() -> tuple[int, int]:
    """(entries, bytes held): what the memory test and the benchmark report."""
    blobs = [blob for bucket in _store.values() for _, blob in bucket.values()]
    return len(blobs), sum(len(b) for b in blobs)


def clear() -> None:
    _store.clear()
    flags.clear()
