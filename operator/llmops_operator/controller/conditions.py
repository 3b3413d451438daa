"""Pure status logic: conditions in the Kubernetes convention and the phases derived from them."""

from __future__ import annotations

import datetime
from typing import Any


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    generation: int | None = None,
    at: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with ``type_`` set; ``lastTransitionTime`` changes only when the status does."""
    status = ("True" if status else "False") if isinstance(status, bool) else status
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status
    cond = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (at or now()) if changed else old.get("lastTransitionTime") or at or now(),
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    out = [c for c in conditions if c.get("type") != type_] + [cond]
    return sorted(out, key=lambda c: c["type"])


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    c = get(conditions, type_)
    return c is not None and c.get("status") == "True"


def pytorchjob_phase(job_status: dict[str, Any] | None) -> str:
    """Our phase from the *set* of PyTorchJob conditions (Failed and Succeeded are terminal)."""
    conds = (job_status or {}).get("conditions") or []
    if is_true(conds, "Failed"):
        return "Failed"
    if is_true(conds, "Succeeded"):
        return "Succeeded"
    if is_true(conds, "Suspended"):
        return "Suspended"
    if is_true(conds, "Running") or is_true(conds, "Restarting"):
        return "Running"
    return "Pending"


def pytorchjob_started(job_status: dict[str, Any] | None) -> str | None:
    """When the job began running: its Running condition's turn to True. Kubeflow's own ``startTime``
    is when it accepted the job, which may be long before any pod is scheduled; counted from there,
    the ETA's mean step rate would take the wait for accelerators as slow training. Only a job first
    seen finished (its Running condition turned False since) or restarting falls back to it."""
    running = get((job_status or {}).get("conditions") or [], "Running")
    if running and running.get("status") == "True":
        return running.get("lastTransitionTime")
    return (job_status or {}).get("startTime")


def pytorchjob_message(job_status: dict[str, Any] | None, type_: str) -> str:
    c = get((job_status or {}).get("conditions") or [], type_)
    return (c or {}).get("message") or ""
