"""Two gloo processes under torchrun follow the loss trajectory of one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.helpers import env, losses, train, write_job

STEPS = 12


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    # The single run also reports progress to an unreachable API server: training must not notice.
    one = train(
        single,
        write_job(single / "job.yaml", hyperparameters={"maxSteps": STEPS, "batchSize": 8}),
        LLMOPS_PROGRESS_CONFIGMAP="t-progress",
        KUBERNETES_SERVICE_HOST="127.0.0.1",
        KUBERNETES_SERVICE_PORT="1",
    )
    assert one.returncode == 0, one.stderr
    assert "progress ConfigMap update failed" in one.stderr

    job = write_job(ddp / "job.yaml", hyperparameters={"maxSteps": STEPS, "batchSize": 4})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "llmops_train",
        "--job",
        str(job),
        "--device",
        "cpu",
    ]
    two = subprocess.run(cmd, env=env(ddp), cwd=ddp, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]

    a, b = losses(single / "ckpt" / "metrics.jsonl"), losses(ddp / "ckpt" / "metrics.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=2e-3), (step, a[step], b[step])
    assert a[STEPS] < a[1] - 1.0
    # One checkpoint holds both ranks' RNG streams; the export is a plain HF model.
    assert (ddp / "ckpt" / f"step-{STEPS:08d}" / "rng-rank1.pt").is_file()
    assert (ddp / "pvc" / "out" / "model" / "model.safetensors").is_file()
