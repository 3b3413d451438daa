"""Exit codes of a training pod, and the exit-reason files through which workers tell the launcher why.

torchrun turns any failed worker into exit 1, which Kubeflow's ``restartPolicy: ExitCode`` reads as
permanent, so a worker's own code would be lost. Each worker therefore also writes ``{code, reason}``
to ``$LLMOPS_EXIT_REASON_DIR/rank-<RANK>.json`` (set by ``llmops_train.launch``), and the launcher
exits with the code that explains the run. Under ``ExitCode``, 1-127 are permanent and >=128 retryable.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

SUCCEEDED = 0
FAILED = 1  # training started and cannot go on (diverged loss, an unexpected error): permanent
BAD_INPUT = 2  # manifest, data, model, device, folders, or a checkpoint of another run: permanent
PREEMPTED = 128 + 15  # SIGTERM: a checkpoint was written, the next pod resumes: retryable
# A worker killed by signal N (the kernel's OOM killer sends SIGKILL) makes the pod exit 128 + N.

REASON_DIR_ENV = "LLMOPS_EXIT_REASON_DIR"


def record(code: int, reason: str) -> None:
    """Leave this worker's outcome for the launcher; a no-op outside it (plain ``python -m``)."""
    folder = os.environ.get(REASON_DIR_ENV)
    if not folder:
        return
    rank = os.environ.get("RANK", "0")
    target = Path(folder) / f"rank-{rank}.json"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"code": code, "reason": reason, "rank": int(rank), "time": time.time()}))
    os.replace(tmp, target)


def read_all(folder: Path) -> list[dict]:
    """Every worker's recorded outcome, earliest first (the first failure is usually the cause)."""
    found = []
    for path in folder.glob("rank-*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda r: r.get("time", 0))
