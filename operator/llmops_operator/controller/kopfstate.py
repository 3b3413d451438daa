"""kopf's record of what it last handled, kept in the operator's memory instead of on every parent.

kopf's default stores each parent's last-handled spec (its "diff base") and a "kopf-managed" marker
as annotations: one PATCH of every parent after its first pass, and one more watch event back. On a
real API server at N = 500 + 500 parents that was 1,000 of the operator's ~8,100 writes
(docs/benchmarks-operator.md). Neither has to outlive the process here: every parent handler runs the
same idempotent pass, so an operator that restarts reconciles each parent once more (kopf calls that
"create" where it would have said "resume"); whether the spec changed meanwhile is read from
``status.observedGeneration`` (``common.announce``), whichever trigger runs the pass.

Retries keep kopf's annotation storage for handler progress: kopf wakes a delayed retry by touching
the object, so that record has to live on it. Only the marker, written on every first pass, is left
out (it tells other kopf operators to ignore our prefix; ours clears the prefix from its diffs anyway).
"""

from __future__ import annotations

import marshal
from typing import Any

import kopf

_bases: dict[str, bytes] = {}  # uid -> the essence kopf last handled, serialised as in cache.py


class MemoryDiffBase(kopf.DiffBaseStorage):
    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        """kopf's essence, built from what it keeps: kopf deep-copies the whole body first, status and
        ``managedFields`` included, on every watch event of every parent (most of them the echoes of
        our own status writes), then drops both."""
        if extra_fields:
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        kept = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        return super().build(body={**{k: v for k, v in body.items() if k != "status"}, "metadata": kept})

    def fetch(self, *, body: kopf.Body) -> Any:
        raw = _bases.get(body.metadata.uid or "")
        return None if raw is None else marshal.loads(raw)

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        _bases[body.metadata.uid or ""] = marshal.dumps(essence)


class UnmarkedProgress(kopf.AnnotationsProgressStorage):
    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        """No marker: it would be the only thing a first pass that succeeds has to PATCH."""


def forget(uid: str | None) -> None:
    """The parent is gone: drop its diff base."""
    _bases.pop(uid or "", None)


def clear() -> None:
    _bases.clear()
