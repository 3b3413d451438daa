"""The complexity benchmark measures what it claims: fewer activations and twice the forward calls
with checkpointing, and exponent fits that recover known powers."""

from __future__ import annotations

import importlib.util
import math

import pytest

from tests.manifests import ROOT

spec = importlib.util.spec_from_file_location("train_complexity", ROOT / "bench" / "train_complexity.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_fit_exponent_recovers_powers() -> None:
    xs = [128, 256, 512, 1024]
    assert bench.fit_exponent(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert bench.fit_exponent(xs, [7 * math.sqrt(x) for x in xs]) == pytest.approx(0.5)


def test_segments_group_layers() -> None:
    model = bench.build_model(layers=9, seq_len=32, mode="sqrt")
    assert [len(s.block) for s in model.model.layers] == [3, 3, 3]
    assert len(bench.build_model(layers=4, seq_len=32, mode="per-layer").model.layers) == 4


@pytest.mark.slow
def test_checkpointing_trades_memory_for_a_second_forward() -> None:
    vanilla = bench.run_isolated("vanilla", 512, 4, 1)
    per_layer = bench.run_isolated("per-layer", 512, 4, 1)
    assert vanilla["forward_calls_per_layer"] == 1 and per_layer["forward_calls_per_layer"] == 2
    assert per_layer["memory_mb"] < 0.6 * vanilla["memory_mb"]
