"""FSDP2 under torchrun (gloo, CPU): sharded DCP checkpoints, resume from them, a gathered HF export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.train.helpers import env, losses, write_job


def _torchrun(tmp: Path, job: Path, *args: str) -> subprocess.CompletedProcess:
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
        *args,
    ]
    return subprocess.run(cmd, env=env(tmp), cwd=tmp, capture_output=True, text=True, timeout=300)


def test_fsdp_checkpoints_resumes_and_exports(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml",
        hyperparameters={"maxSteps": 6, "batchSize": 4, "strategy": "fsdp", "gradientAccumulation": 2},
        checkpoint={"interval": 3, "keep": 2},
    )
    first = _torchrun(tmp_path, job)
    assert first.returncode == 0, first.stderr[-3000:]
    manifest = json.loads((tmp_path / "ckpt" / "step-00000006" / "manifest.json").read_text())
    assert manifest["format"] == "dcp" and manifest["world_size"] == 2
    assert any(f.startswith("dcp/") for f in manifest["files"])
    assert {"rng-rank0.pt", "rng-rank1.pt"} <= set(manifest["files"])

    second = _torchrun(tmp_path, job, "--max-steps", "8")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "at step 6" in second.stderr
    by_step = losses(tmp_path / "ckpt" / "metrics.jsonl")
    assert sorted(by_step) == list(range(1, 9)) and by_step[8] < by_step[1]
    assert (tmp_path / "pvc" / "out" / "model" / "model.safetensors").is_file()
