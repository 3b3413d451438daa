"""Training pods' failures: what was retried, the retry budget, and why a job failed.

Under ``restartPolicy: ExitCode`` Kubeflow replaces a pod that exits 128-255 (preempted, OOM-killed:
the trainer checkpoints on SIGTERM and its launcher exits 143) and fails the job on 1-127; it never
counts the replacements against ``backoffLimit``. So the operator counts them: every retryable
failure it sees is recorded in ``status.retries``, and past ``runPolicy.backoffLimit`` the job is
stopped (suspended, so its pods go) and reported Failed with the exits that spent the budget.
"""

from __future__ import annotations

from typing import Any

CONTAINER = "pytorch"  # Kubeflow's required container name
RETRYABLE_FROM = 128


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    """The trainer container's terminated state ({} while it runs)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == CONTAINER:
            return (cs.get("state") or {}).get("terminated") or {}
    return {}


def failed(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]


def record(pod: dict[str, Any]) -> dict[str, Any]:
    state, meta = terminated(pod), pod["metadata"]
    entry = {"pod": meta["name"], "uid": meta.get("uid"), "exitCode": state.get("exitCode")}
    if state.get("reason"):
        entry["reason"] = state["reason"]
    if state.get("finishedAt"):
        entry["time"] = state["finishedAt"]
    return entry


def updated(old: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` plus the retryable failures among ``pods`` not recorded yet (by pod uid)."""
    known = {r.get("uid") for r in old}
    new = [
        record(p)
        for p in failed(pods)
        if p["metadata"].get("uid") not in known and (terminated(p).get("exitCode") or 0) >= RETRYABLE_FROM
    ]
    return [*old, *new]


def describe(entry: dict[str, Any]) -> str:
    reason = f" ({entry['reason']})" if entry.get("reason") else ""
    return f"{entry['pod']} exited {entry.get('exitCode')}{reason}"


def exhausted_message(retries: list[dict[str, Any]], limit: int) -> str:
    last = ", ".join(describe(r) for r in retries[-3:])
    return f"retry budget spent: {len(retries)} retryable failures, runPolicy.backoffLimit is {limit}; last: {last}"


def permanent_cause(pods: list[dict[str, Any]]) -> str | None:
    """Why a job failed for good: the pod that exited 1-127, with the trainer's own last words."""
    for pod in failed(pods):
        state = terminated(pod)
        if 0 < (state.get("exitCode") or 0) < RETRYABLE_FROM:
            words = (state.get("message") or "").strip().splitlines()[-1:]
            return describe(record(pod)) + (f": {words[0][:300]}" if words else "")
    return None
