"""`llmops local demo`: the README's main job, end to end (train, export, serve, complete, drain)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmops.local import train_command
from tests.manifests import ROOT


def test_train_command_uses_torchrun_for_several_processes(tmp_path: Path) -> None:
    one = train_command(tmp_path / "job.yaml", tmp_path, 1, 5)
    assert one[1:3] == ["-m", "llmops_train"] and one[-2:] == ["--max-steps", "5"]
    two = train_command(tmp_path / "job.yaml", tmp_path, 2, None)
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


@pytest.mark.slow
def test_demo_trains_serves_and_answers(tmp_path: Path) -> None:
    paths = ":".join(str(ROOT / p) for p in ("cli", "operator", "training-jobs", "inference-service"))
    result = subprocess.run(
        [sys.executable, "-m", "llmops", "local", "demo", "--run-dir", str(tmp_path / "run"), "--max-steps", "20"],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": paths, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "completion:" in result.stdout and "generated tokens" in result.stdout
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert "draining" in result.stderr
