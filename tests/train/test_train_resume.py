"""Fault tolerance: SIGKILL + restart is bit-exact, SIGTERM checkpoints and exits 143 (retryable), broken checkpoints are skipped."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import CORPUS, command, env, losses, train, write_job

STEPS = 24


def _wait_for_step(metrics: Path, proc: subprocess.Popen, step: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(losses(metrics), default=0) >= step:
            return
        assert proc.poll() is None, "trainer exited before reaching the step"
        time.sleep(0.01)
    raise AssertionError(f"step {step} not reached")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    result = train(
        tmp,
        write_job(
            tmp / "job.yaml", hyperparameters={"maxSteps": STEPS}, checkpoint={"interval": 4, "keep": 2}
        ),
    )
    assert result.returncode == 0, result.stderr
    return tmp


def test_sigkill_then_restart_equals_an_uninterrupted_run_bit_for_bit(
    reference: Path, tmp_path: Path
) -> None:
    kill_at = random.Random().randint(5, STEPS - 2)  # after the first checkpoint (step 4)
    job = write_job(
        tmp_path / "job.yaml", hyperparameters={"maxSteps": STEPS}, checkpoint={"interval": 4, "keep": 2}
    )
    proc = subprocess.Popen(
        command(job), env=env(tmp_path), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_step(tmp_path / "ckpt" / "metrics.jsonl", proc, kill_at)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "pvc" / "out" / "model").exists(), "killed too late to test anything"

    result = train(tmp_path, job)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr, f"kill at step {kill_at}: {result.stderr}"

    want = load_file(reference / "pvc" / "out" / "model" / "model.safetensors")
    got = load_file(tmp_path / "pvc" / "out" / "model" / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), f"{name} differs (killed at step {kill_at})"
    ref, res = losses(reference / "ckpt" / "metrics.jsonl"), losses(tmp_path / "ckpt" / "metrics.jsonl")
    assert res == ref, f"loss trajectory differs (killed at step {kill_at})"


def test_sigterm_checkpoints_at_the_next_step_and_exits_143(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml", hyperparameters={"maxSteps": 10_000}, checkpoint={"interval": 1000}
    )
    proc = subprocess.Popen(
        command(job),
        env=env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(tmp_path / "ckpt" / "metrics.jsonl", proc, 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr  # retryable under Kubeflow's ExitCode policy
    assert "Traceback" not in stderr
    ckpts = sorted((tmp_path / "ckpt").glob("step-*"))
    assert len(ckpts) == 1
    stopped = int(ckpts[0].name.split("-")[1])
    assert 3 <= stopped < 1000 and stopped == max(losses(tmp_path / "ckpt" / "metrics.jsonl"))
    assert not (tmp_path / "pvc" / "out" / "model").exists(), "an interrupted run must not export"

    # The next pod resumes from it.
    result = train(tmp_path, job, "--max-steps", str(stopped + 2))
    assert result.returncode == 0, result.stderr
    assert f"resumed from {ckpts[0]} at step {stopped}" in result.stderr
    assert (tmp_path / "pvc" / "out" / "model" / "model.safetensors").is_file()


def test_corrupted_or_partial_newest_checkpoint_falls_back_to_the_previous(tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml", hyperparameters={"maxSteps": 10}, checkpoint={"interval": 5, "keep": 3}
    )
    assert train(tmp_path, job).returncode == 0
    ckpt = tmp_path / "ckpt"
    newest = ckpt / "step-00000010"
    data = bytearray((newest / "model.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (newest / "model.pt").write_bytes(bytes(data))
    partial = ckpt / "step-00000015"  # a directory without a manifest, as an interrupted writer could leave
    partial.mkdir()
    (partial / "model.pt").write_bytes(b"half")

    result = train(tmp_path, job, "--max-steps", "12")
    assert result.returncode == 0, result.stderr
    assert "skipping checkpoint" in result.stderr and "step-00000015" in result.stderr
    assert "model.pt checksum mismatch" in result.stderr
    assert f"resumed from {ckpt / 'step-00000005'} at step 5" in result.stderr
    assert not partial.exists(), "a manifest-less directory is cleaned up by the next save"


def test_only_this_runs_checkpoints_are_resumed_and_a_broken_root_tokenizer_does_not_matter(
    tmp_path: Path,
) -> None:
    job = write_job(
        tmp_path / "job.yaml", hyperparameters={"maxSteps": 10}, checkpoint={"interval": 5, "keep": 3}
    )
    assert train(tmp_path, job).returncode == 0
    ckpt = tmp_path / "ckpt"

    # Another job pointed at the same folder: other learning rate and sequence length, other data.
    other = write_job(
        tmp_path / "other.yaml",
        hyperparameters={"maxSteps": 10, "learningRate": 0.001, "sequenceLength": 32},
        checkpoint={"interval": 5, "keep": 3},
    )
    refused = train(tmp_path, other)
    assert refused.returncode == 2, refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("llmops-train: error:")]
    assert f"checkpoint {ckpt / 'step-00000010'} belongs to a different run" in line
    assert "hyperparameters.learningRate 0.003 -> 0.001" in line
    assert "hyperparameters.sequenceLength 64 -> 32" in line
    data = tmp_path / "other.txt"
    data.write_text(CORPUS.read_text()[:-200])
    refused = train(tmp_path, write_job(tmp_path / "data.yaml", data={"train": str(data)}))
    assert refused.returncode == 2 and "data.train.sha256 differs" in refused.stderr, refused.stderr
    assert sorted(p.name for p in ckpt.glob("step-*")) == ["step-00000005", "step-00000010"], (
        "nothing deleted"
    )

    # A truncated scratch tokenizer: the verified copy inside the checkpoint is what counts.
    root_tok = ckpt / "tokenizer" / "tokenizer.json"
    root_tok.write_bytes(root_tok.read_bytes()[:100])
    result = train(tmp_path, job, "--max-steps", "12")  # maxSteps may change
    assert result.returncode == 0, result.stderr
    assert f"resumed from {ckpt / 'step-00000010'} at step 10" in result.stderr
