"""``python -m llmops_train.launch [trainer arguments]``: the container command of a training pod.

It runs torchrun (``torch.distributed.run``, configured by the ``PET_*`` environment as the PyTorchJob
sets it) with ``-m llmops_train`` and the given arguments as a child, forwards SIGTERM and SIGINT to
it, and exits with a code that says what happened, which torchrun alone cannot (it exits 1 for every
failed worker):

==========  =======================================================  ============================
exit code   meaning                                                  under ``restartPolicy: ExitCode``
==========  =======================================================  ============================
0           finished, model exported                                 done
1           training failed (diverged loss, unexpected error)        permanent
2           bad input or config (manifest, data, model, device,      permanent
            folders, a checkpoint directory of another run)
143         preempted: SIGTERM, checkpoint written                   retryable, resumes
128 + N     a worker was killed by signal N (137: OOM killer)        retryable
==========  =======================================================  ============================

The outcome is also written, as JSON ``{"code", "reason"}``, to the container's termination message
file (``$LLMOPS_TERMINATION_LOG``, default ``/dev/termination-log`` when it exists), which Kubernetes
shows in ``status.containerStatuses[].state.terminated.message``; and as one line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from . import exits
from .agent import AGENT_REPORT_ENV

PROG = "llmops-launch"
# torchrun gives workers 30 s after forwarding SIGTERM before SIGKILL; a step plus a checkpoint of a
# large model needs longer. The pod's terminationGracePeriodSeconds stays the real bound. Set through
# the environment: torch versions without the setting ignore it, where a flag would be an error.
DEFAULT_SHUTDOWN_TIMEOUT = "600"


def torchrun_command(trainer_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "llmops_train.agent", "-m", "llmops_train", *trainer_args]


def decide(
    returncode: int, signalled: int | None, reasons: list[dict], failures: list[dict]
) -> tuple[int, str]:
    """The pod's exit code and why, from torchrun's code, a signal the launcher got, the workers'
    recorded outcomes (earliest first) and the workers torchrun saw fail."""
    if returncode == 0:
        return exits.SUCCEEDED, "succeeded"
    if signalled is not None:
        saved = next((r for r in reasons if r.get("code") == exits.PREEMPTED), None)
        why = (
            saved["reason"]
            if saved
            else "no checkpoint confirmed; the next pod resumes from the newest valid one"
        )
        return exits.PREEMPTED, f"preempted ({signal.Signals(signalled).name}): {why}"
    killed = sorted((f for f in failures if f.get("exitcode", 0) < 0), key=lambda f: f.get("time", 0))
    if killed:
        sig = -killed[0]["exitcode"]
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = " (out of memory?)" if sig == signal.SIGKILL else ""
        return 128 + sig, f"rank {killed[0]['rank']} was killed by {name}{hint}"
    if reasons:
        return int(reasons[0]["code"]), reasons[0]["reason"]
    if returncode < 0:
        return 128 - returncode, f"torchrun was killed by signal {-returncode}"
    if returncode >= 128:
        return returncode, f"torchrun exited {returncode}"
    return exits.FAILED, f"torchrun exited {returncode} without a recorded reason (see the log above)"


def _termination_log(env: dict[str, str]) -> Path | None:
    path = Path(env.get("LLMOPS_TERMINATION_LOG") or "/dev/termination-log")
    return path if path.parent.is_dir() and (path.exists() or "LLMOPS_TERMINATION_LOG" in env) else None


def main(argv: list[str] | None = None) -> int:
    trainer_args = sys.argv[1:] if argv is None else argv
    folder = Path(tempfile.mkdtemp(prefix="llmops-exit-"))
    env = {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": DEFAULT_SHUTDOWN_TIMEOUT} | dict(os.environ)
    env |= {exits.REASON_DIR_ENV: str(folder), AGENT_REPORT_ENV: str(folder / "agent.json")}
    signalled: list[int] = []
    children: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        signalled.append(signum)
        for child in children:
            child.send_signal(signum)

    # Before the child starts: as PID 1 a signal without a handler would be dropped, not forwarded.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    children.append(subprocess.Popen(torchrun_command(trainer_args), env=env))
    if signalled:  # arrived while the child was starting
        children[0].send_signal(signalled[0])
    returncode = children[0].wait()
    try:
        failures = json.loads((folder / "agent.json").read_text())["failures"]
    except (OSError, ValueError, KeyError):
        failures = []
    code, reason = decide(returncode, signalled[0] if signalled else None, exits.read_all(folder), failures)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{PROG}: exit {code}: {reason}", file=sys.stderr)
    if (log := _termination_log(env)) is not None:
        with contextlib.suppress(OSError):
            log.write_text(json.dumps({"code": code, "reason": reason}))
    return code


if __name__ == "__main__":
    sys.exit(main())
