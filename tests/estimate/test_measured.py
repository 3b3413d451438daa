"""The estimate against measured peak memory of the trainer's own step, and the server's KV cache.

Runs ``bench/estimate_check.py``'s quick cases (each training case in a fresh process; see its
docstring for how peak memory is measured and why). Goal: every estimate within ±20 %.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.manifests import ROOT

pytest.importorskip("torch")
pytest.importorskip("peft")

spec = importlib.util.spec_from_file_location("estimate_check", ROOT / "bench" / "estimate_check.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["estimate_check"] = bench  # dataclasses look their module up
spec.loader.exec_module(bench)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", bench.QUICK, ids=[c.name for c in bench.QUICK])
def test_training_estimate_within_20_percent_of_measured_peak(case):
    row = bench.measure_training(case)
    assert 0.8 <= row["ratio"] <= 1.2, row
    # The weights alone are known exactly: the measurement must see them, or it measures nothing.
    assert row["weights_measured_mib"] == pytest.approx(row["weights_estimate_mib"], rel=0.1)


def test_checkpointing_and_lora_lower_both_estimate_and_measurement():
    full, ckpt, lora = (bench.training_memory(c.shape(), c.plan()).peak for c in bench.QUICK[:3])
    assert ckpt < full and lora < full


@pytest.mark.parametrize(("batch", "prompt", "new"), bench.KV_QUICK)
def test_server_kv_cache_matches_estimate(batch, prompt, new):
    row = bench.measure_kv(batch, prompt, new)
    assert row["context"] == prompt + new
    assert row["ratio"] == pytest.approx(1.0, abs=0.2)
    # The engine's buffers grow by doubling; the estimate's kv_growth term books one more live size.
    assert 1.0 <= row["buffers_over_live"] <= 2.0
