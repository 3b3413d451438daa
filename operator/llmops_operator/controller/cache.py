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

import contextlib
import marshal
from collections.abc import Iterator
from typing import Any

Key = tuple[str, str, str, str]
Bucket = tuple[str, str, str]  # (apiVersion, kind, namespace)
# name -> (the parent it belongs to as "label=value", or "", the compacted object, serialised)
_store: dict[Bucket, dict[str, tuple[str, bytes]]] = {}
flags: dict[str, bool] = {}  # facts learnt once per run, e.g. that the PyTorchJob CRD is served
_creating: set[Key] = set()  # children whose create is in flight (``creating``)
# Failed training pods gone before a pass of their parent read them, by (namespace, parent) and uid.
# Kubeflow replaces a pod that exits retryably at once, under the same name; when every pass slot is
# busy, the pass its failure started runs after that. Kept until a pass has read them (``settle``).
_gone: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
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
# without their status in the cache, the controllers' status updates, one or two per object as the
# cluster settles, leave the entry as it was and start no pass (``observe``).
STATUS_UNREAD = {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"}
# Of a PyTorchJob's status a pass reads its phase (conditions) and times; Kubeflow rewrites
# ``lastReconcileTime`` and ``replicaStatuses`` on its own schedule.
PYTORCHJOB_STATUS_READ = ("conditions", "startTime", "completionTime")


def unread(obj: dict[str, Any]) -> bool:
    """Whether no pass reads ``obj`` at all, so the cache does not hold it: a training pod until it
    fails (retries read failed pods alone). Its creation, scheduling and progress are then not news."""
    return obj.get("kind") == "Pod" and (obj.get("status") or {}).get("phase") != "Failed"


def compact(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as far as a reconcile reads it, so that an event which changes nothing read leaves the
    entry equal (``observe``). Dropped: ``metadata.managedFields`` (other writers' field ownership)
    and ``resourceVersion`` (nothing reads it; a watch resumes from its event's), a Pod's spec
    (retries read a failed pod's labels and status), a PyTorchJob's spec beyond ``runPolicy``
    (created once, never compared; only ``runPolicy`` follows the TrainingJob) and its status beyond
    :data:`PYTORCHJOB_STATUS_READ`, and the status of :data:`STATUS_UNREAD` kinds."""
    out = dict(obj)
    kind, spec, status = out.get("kind"), out.get("spec"), out.get("status")
    meta = out.get("metadata")
    if isinstance(meta, dict) and ("managedFields" in meta or "resourceVersion" in meta):
        out["metadata"] = {k: v for k, v in meta.items() if k not in ("managedFields", "resourceVersion")}
    if kind in STATUS_UNREAD:
        out.pop("status", None)
    if kind == "Pod":
        out.pop("spec", None)
    elif kind == "PyTorchJob":
        if isinstance(spec, dict):
            out["spec"] = {"runPolicy": spec["runPolicy"]} if "runPolicy" in spec else {}
        if isinstance(status, dict):
            out["status"] = {k: status[k] for k in PYTORCHJOB_STATUS_READ if k in status}
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


@contextlib.contextmanager
def creating(child: dict[str, Any]) -> Iterator[None]:
    """Mark our create of ``child`` in flight: a watch event that adds it meanwhile is the echo of
    that create, which the pass making it reads from the response, so it starts no second pass."""
    key = key_of(child)
    _creating.add(key)
    try:
        yield
    finally:
        _creating.discard(key)


def forget(obj: dict[str, Any] | Key) -> bool:
    """Drop an entry; True when there was one."""
    av, kind, ns, name = obj if isinstance(obj, tuple) else key_of(obj)
    bucket = _store.get((av, kind, ns))
    return bucket is not None and bucket.pop(name, None) is not None


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


def _retire(obj: dict[str, Any], deleted: bool) -> bool:
    """Move a held (so failed) pod to ``_gone`` when it is deleted or replaced under its name."""
    held = seen(*key_of(obj)) if obj.get("kind") == "Pod" else None
    uid = ((held or {}).get("metadata") or {}).get("uid")
    if held is None or (not deleted and uid == (obj.get("metadata") or {}).get("uid")):
        return False
    forget(held)
    _gone.setdefault((key_of(held)[2], _parent(held)), {})[uid or ""] = held
    return True


def gone(namespace: str, parent: str) -> list[dict[str, Any]]:
    """The failed pods of ``parent`` (``"label=value"``) that are gone but not yet read by its pass."""
    return list(_gone.get((namespace, parent), {}).values())


def settle(namespace: str, parent: str, pods: list[dict[str, Any]] | None = None) -> None:
    """A pass of ``parent`` has read these gone pods (None: all; the parent is gone or finished)."""
    held = _gone.get((namespace, parent), {})
    for pod in held.copy().values() if pods is None else pods:
        held.pop((pod.get("metadata") or {}).get("uid") or "", None)
    if not held:
        _gone.pop((namespace, parent), None)


def observe(event: dict[str, Any]) -> bool:
    """Feed one watch event; False when it tells nothing new (the echo of our own create or apply,
    a change to what no pass reads)."""
    obj = event.get("object") or {}
    retired = _retire(obj, event.get("type") == "DELETED")
    if event.get("type") == "DELETED" or unread(obj):
        return forget(obj) or retired  # news only if it was held
    av, kind, ns, name = key_of(obj)
    bucket = _store.setdefault((av, kind, ns), {})
    old, parent, kept = bucket.get(name), _parent(obj), compact(obj)
    entry = (parent, marshal.dumps(kept))
    # Equal bytes mean equal objects, but not the reverse: marshal flags a string that is referenced
    # elsewhere (json's decoder shares a key such as "type" between a watch event's envelope and its
    # object), so the echo of our own create can differ from its response in bytes alone.
    if old is not None and (old == entry or (old[0] == parent and marshal.loads(old[1]) == kept)):
        return False
    bucket[name] = entry
    return retired or old is not None or (av, kind, ns, name) not in _creating


def size() -> tuple[int, int]:
    """(entries, bytes held): what the memory test and the benchmark report."""
    blobs = [blob for bucket in _store.values() for _, blob in bucket.values()]
    return len(blobs), sum(len(b) for b in blobs)


def clear() -> None:
    _store.clear()
    flags.clear()
    _creating.clear()
    _gone.clear()
