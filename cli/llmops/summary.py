"""One line of facts per resource, from its status: what ``status`` lists and ``--wait`` watches.

Pure functions of the object (and the clock), so the table and the wait logic are tested without a
cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

SUCCEEDED, FAILED, PENDING = "succeeded", "failed", "pending"


@dataclass(frozen=True)
class Summary:
    kind: str
    namespace: str
    name: str
    phase: str
    progress: str  # step/total for a job, ready/replicas for an endpoint
    loss: str
    eta: str
    url: str
    age: str
    message: str  # the condition that explains the phase
    outcome: str  # SUCCEEDED, FAILED or PENDING: what --wait waits for


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's short ages: 45s, 12m, 3h, 5d."""
    if not timestamp:
        return "-"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    seconds = int(((now or datetime.now(timezone.utc)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def _explain(status: dict[str, Any]) -> str:
    """The message of the condition a user most needs: Stalled, else a Ready that is not True."""
    for type_, bad in (("Stalled", "True"), ("Failed", "True"), ("Ready", "False"), ("Succeeded", "False")):
        c = condition(status, type_)
        if c and c.get("status") == bad and c.get("message"):
            return f"{c.get('reason', type_)}: {c['message']}"
    return ""


def outcome(obj: dict[str, Any]) -> str:
    """Terminal states: a job Succeeded/Failed, an endpoint Ready; an invalid spec, a failed source
    job or a rollout past its progress deadline (what fails `kubectl rollout status`) is fatal."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    generation = (obj.get("metadata") or {}).get("generation")
    if observed is not None and generation is not None and observed < generation:
        return PENDING  # the operator has not seen this spec yet: the status describes the old one
    phase = status.get("phase")
    stalled = condition(status, "Stalled") or {}
    ready = condition(status, "Ready") or {}
    if (
        phase in ("Failed", "Invalid")
        or (stalled.get("status") == "True" and stalled.get("reason") in ("InvalidSpec", "ModelFailed"))
        or (ready.get("status") == "False" and ready.get("reason") == "RolloutFailed")  # past its deadline
    ):
        return FAILED
    if obj["kind"] == "TrainingJob":
        return SUCCEEDED if phase == "Succeeded" else PENDING
    return SUCCEEDED if phase == "Ready" else PENDING


def summarize(obj: dict[str, Any], now: datetime | None = None) -> Summary:
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if obj["kind"] == "TrainingJob":
        p = status.get("progress") or {}
        step, total = p.get("step"), p.get("totalSteps")
        progress = p.get("summary") or (f"{step}/{total}" if step is not None and total else "-")
        loss = f"{p['loss']:.4f}" if isinstance(p.get("loss"), (int, float)) else "-"
        eta, url = p.get("eta") or "-", "-"
    else:
        ready, replicas = status.get("readyReplicas"), status.get("replicas")
        progress = f"{ready or 0}/{replicas}" if replicas is not None else "-"
        loss, eta, url = "-", "-", status.get("url") or "-"
    return Summary(
        kind=obj["kind"],
        namespace=meta.get("namespace") or "",
        name=meta.get("name") or "",
        phase=status.get("phase") or "Unknown",
        progress=progress,
        loss=loss,
        eta=eta,
        url=url,
        age=age(meta.get("creationTimestamp"), now),
        message=_explain(status),
        outcome=outcome(obj),
    )
