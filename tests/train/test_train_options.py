"""Stopping rules and loop options: early stopping, time budget, gradient accumulation, activation checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.helpers import losses, metrics, train, write_job


def _run(tmp: Path, name: str, **overrides: object) -> Path:
    d = tmp / name
    d.mkdir()
    result = train(d, write_job(d / "job.yaml", **overrides))
    assert result.returncode == 0, result.stderr
    return d


def test_early_stopping_ends_the_run_and_exports(tmp_path: Path) -> None:
    # minDelta is so large that only the first evaluation counts as an improvement.
    d = _run(
        tmp_path,
        "es",
        hyperparameters={
            "maxSteps": 50,
            "evalInterval": 2,
            "earlyStopping": {"patience": 2, "minDelta": 100},
        },
    )
    records = metrics(d / "ckpt" / "metrics.jsonl")
    stop = [r for r in records if r.get("event") == "early_stopping"]
    assert len(stop) == 1 and stop[0]["step"] == 6
    assert max(losses(d / "ckpt" / "metrics.jsonl")) == 6
    assert (d / "pvc" / "out" / "model" / "model.safetensors").is_file()


def test_time_budget_stops_with_a_checkpoint_and_an_export(tmp_path: Path) -> None:
    d = _run(tmp_path, "budget", hyperparameters={"maxSteps": 100_000, "maxSeconds": 1})
    last = max(losses(d / "ckpt" / "metrics.jsonl"))
    assert 1 <= last < 100_000
    assert (d / "ckpt" / f"step-{last:08d}").is_dir()
    assert (d / "pvc" / "out" / "model" / "model.safetensors").is_file()


def test_gradient_accumulation_matches_the_larger_batch(tmp_path: Path) -> None:
    big = _run(tmp_path, "big", hyperparameters={"maxSteps": 6, "batchSize": 8})
    acc = _run(tmp_path, "acc", hyperparameters={"maxSteps": 6, "batchSize": 4, "gradientAccumulation": 2})
    a, b = losses(big / "ckpt" / "metrics.jsonl"), losses(acc / "ckpt" / "metrics.jsonl")
    assert a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=2e-3)


def test_activation_checkpointing_changes_memory_not_math(tmp_path: Path) -> None:
    plain = _run(tmp_path, "plain", hyperparameters={"maxSteps": 4})
    ckpt = _run(tmp_path, "ac", hyperparameters={"maxSteps": 4, "activationCheckpointing": True})
    a, b = losses(plain / "ckpt" / "metrics.jsonl"), losses(ckpt / "ckpt" / "metrics.jsonl")
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=1e-5)
