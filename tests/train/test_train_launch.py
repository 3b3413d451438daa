"""The container command under a real torchrun (gloo, CPU): exit codes Kubeflow's ExitCode policy can act on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops_train import exits
from llmops_train.launch import decide
from tests.train.helpers import env, losses, write_job


def _launch_cmd(job: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llmops_train.launch", "--job", str(job), "--device", "cpu", *args]


def _env(tmp: Path, ranks: int) -> dict[str, str]:
    return env(
        tmp,
        PET_NPROC_PER_NODE=str(ranks),
        PET_STANDALONE="1",
        LLMOPS_TERMINATION_LOG=str(tmp / "termination-log"),
    )


def _wait_for_step(metrics: Path, proc: subprocess.Popen, step: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(losses(metrics), default=0) >= step:
            return
        assert proc.poll() is None, "exited before reaching the step"
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached")


def _termination(tmp: Path) -> dict:
    return json.loads((tmp / "termination-log").read_text())


def test_sigterm_checkpoints_exits_143_and_the_next_pod_resumes(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml",
        hyperparameters={"maxSteps": 10_000, "batchSize": 4},
        checkpoint={"interval": 1000},
    )
    proc = subprocess.Popen(
        _launch_cmd(job),
        env=_env(tmp_path, 2),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(tmp_path / "ckpt" / "metrics.jsonl", proc, 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == exits.PREEMPTED, stderr[-3000:]
    assert "llmops-launch: exit 143: preempted (SIGTERM): SIGTERM: checkpoint written" in stderr
    assert _termination(tmp_path)["code"] == 143
    ckpts = sorted((tmp_path / "ckpt").glob("step-*"))
    assert len(ckpts) == 1, "both ranks agreed on one checkpoint"
    stopped = int(ckpts[0].name.split("-")[1])
    assert {"rng-rank0.pt", "rng-rank1.pt"} <= {p.name for p in ckpts[0].iterdir()}

    again = subprocess.run(
        _launch_cmd(job, "--max-steps", str(stopped + 2)),
        env=_env(tmp_path, 2),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {ckpts[0]} at step {stopped}" in again.stderr
    assert _termination(tmp_path) == {"code": 0, "reason": "succeeded"}
    assert (tmp_path / "pvc" / "out" / "model" / "model.safetensors").is_file()


def test_bad_input_is_a_permanent_code_with_its_reason(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", data={"train": str(tmp_path / "missing.txt")})
    done = subprocess.run(
        _launch_cmd(job), env=_env(tmp_path, 1), cwd=tmp_path, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == exits.BAD_INPUT, done.stderr[-3000:]
    assert 0 < done.returncode < 128, "permanent under restartPolicy: ExitCode"
    reason = _termination(tmp_path)
    assert reason["code"] == 2 and reason["reason"] == f"training data {tmp_path / 'missing.txt'} not found"


def _worker_pids(job: Path) -> list[int]:
    """Processes running ``-m llmops_train`` (not the launcher or torchrun) on this test's job."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if "-m" in argv and argv[argv.index("-m") + 1] == "llmops_train" and str(job) in argv:
            pids.append(int(proc.name))
    return pids


def test_a_worker_killed_like_the_oom_killer_does_is_retryable(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml", hyperparameters={"maxSteps": 10_000}, checkpoint={"interval": 1000}
    )
    proc = subprocess.Popen(
        _launch_cmd(job),
        env=_env(tmp_path, 1),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(tmp_path / "ckpt" / "metrics.jsonl", proc, 2)
    (worker,) = _worker_pids(job)
    os.kill(worker, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 137, stderr[-3000:]
    assert _termination(tmp_path)["reason"] == "rank 0 was killed by SIGKILL (out of memory?)"


@pytest.mark.parametrize(
    ("returncode", "signalled", "reasons", "failures", "code"),
    [
        (0, None, [], [], 0),
        (1, signal.SIGTERM, [], [], 143),  # the pod is going away: always worth a retry
        (
            1,
            None,
            [{"code": 2, "reason": "bad", "time": 2}, {"code": 1, "reason": "peer gone", "time": 3}],
            [],
            2,
        ),
        (
            1,
            None,
            [{"code": 1, "reason": "peer gone", "time": 3}],
            [{"rank": 1, "exitcode": -9, "time": 2}],
            137,
        ),
        (1, None, [], [{"rank": 0, "exitcode": -11, "time": 1}], 139),
        (1, None, [], [{"rank": 0, "exitcode": 1, "time": 1}], 1),
        (-9, None, [], [], 137),
    ],
)
def test_decide(returncode: int, signalled: int | None, reasons: list, failures: list, code: int) -> None:
    assert decide(returncode, signalled, reasons, failures)[0] == code


@pytest.mark.parametrize("world", ["1", "2"])
def test_a_torchrun_worker_leaves_without_finalizing(tmp_path: Path, world: str) -> None:
    """Under torchrun (WORLD_SIZE > 1) a worker exits with its code without interpreter finalization,
    where a gloo thread freeing a tensor aborted ranks after runs that succeeded; alone it exits as
    usual. Logging and stdio are flushed either way."""
    script = (
        "import atexit, logging, sys\n"
        "from llmops_train.__main__ import leave\n"
        "atexit.register(lambda: print('finalized', flush=True))\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "print('ran')\n"
        "logging.getLogger('x').warning('logged')\n"
        "leave(3)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env(tmp_path, WORLD_SIZE=world), capture_output=True, text=True
    )
    assert run.returncode == 3
    assert run.stdout.splitlines() == (["ran"] if world == "2" else ["ran", "finalized"])
    assert "logged" in run.stderr
