"""The training-complexity benchmark measures what it says: checkpointing keeps fewer bytes for backward,
runs each layer's forward twice, leaves the gradients unchanged, and the fits recover known powers.

Tiny sizes (hidden 32, N <= 64) so the whole file runs in seconds.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from tests.manifests import ROOT

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

spec = importlib.util.spec_from_file_location("train_complexity", ROOT / "bench" / "train_complexity.py")
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench  # dataclasses look their module up here
spec.loader.exec_module(bench)

HIDDEN = 32


def by_mode(layers: int, seq_len: int, repeats: int = 1) -> dict:
    return {m.mode: m for m in bench.measure_step(layers, seq_len, repeats=repeats, hidden=HIDDEN)}


def test_fit_exponent_recovers_powers() -> None:
    xs = [128, 256, 512, 1024]
    assert bench.fit_exponent(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert bench.fit_exponent(xs, [7 * math.sqrt(x) for x in xs]) == pytest.approx(0.5)


@pytest.mark.parametrize(("layers", "sizes"), [(1, [1]), (4, [2, 2]), (9, [3, 3, 3]), (8, [3, 3, 2])])
def test_sqrt_mode_groups_layers_in_segments_of_about_sqrt_l(layers: int, sizes: list[int]) -> None:
    model = bench.build_model(layers, 16, hidden=HIDDEN)
    bench.set_mode(model, "sqrt")
    assert [len(s.block) for s in model.model.layers] == sizes
    bench.set_mode(model, "vanilla")
    assert len(model.model.layers) == layers


def test_checkpointing_keeps_fewer_bytes_and_runs_forward_twice() -> None:
    got = by_mode(layers=4, seq_len=64)
    assert got["vanilla"].forward_calls_per_layer == 1
    assert got["per-layer"].forward_calls_per_layer == 2
    assert got["sqrt"].forward_calls_per_layer == 2
    assert 0 < got["per-layer"].peak_saved_mib < got["vanilla"].peak_saved_mib
    assert 0 < got["sqrt"].peak_saved_mib < got["vanilla"].peak_saved_mib
    assert all(m.seconds > 0 for m in got.values())


def test_memory_grows_with_n_and_checkpointing_flattens_growth_with_l() -> None:
    short, long_ = by_mode(4, 32, repeats=0), by_mode(4, 64, repeats=0)
    for mode in bench.MODES:
        assert long_[mode].peak_saved_mib > short[mode].peak_saved_mib
    shallow, deep = by_mode(1, 32, repeats=0), by_mode(9, 32, repeats=0)
    growth = {m: deep[m].peak_saved_mib / shallow[m].peak_saved_mib for m in bench.MODES}
    assert growth["vanilla"] > growth["sqrt"] > 1
    assert growth["vanilla"] > growth["per-layer"]


def test_meter_releases_everything_after_backward() -> None:
    model = bench.build_model(4, 32, hidden=HIDDEN)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(0, bench.VOCAB, (1, 32))
    for mode in bench.MODES:
        bench.set_mode(model, mode)
        meter = bench.SavedTensorMeter(params)
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
            bench.train_step(model, ids)
        assert meter.peak > 0 and meter.current == 0 and not meter.live, mode


def test_checkpointing_leaves_gradients_unchanged() -> None:
    model = bench.build_model(4, 32, hidden=HIDDEN)
    ids = torch.randint(0, bench.VOCAB, (1, 32))
    grads = {}
    for mode in bench.MODES:
        bench.set_mode(model, mode)
        bench.train_step(model, ids)
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    for mode in ("per-layer", "sqrt"):
        for a, b in zip(grads["vanilla"], grads[mode], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_table_and_plots(tmp_path) -> None:
    results = {"by_n": [], "by_l": []}
    for n in (16, 32):
        results["by_n"] += [vars(m) for m in bench.measure_step(2, n, repeats=1, hidden=HIDDEN)]
    for depth in (1, 4):
        results["by_l"] += [vars(m) for m in bench.measure_step(depth, 16, repeats=1, hidden=HIDDEN)]
    text = bench.table(results)
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 9 and all(line.count("|") == 7 for line in rows)
    paths = bench.plot(results, tmp_path)
    assert [p.name for p in paths] == ["train-complexity-memory.png", "train-complexity-runtime.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_context_parallel_ranks_each_keep_half_the_activations() -> None:
    """Two gloo ranks hold half of each sequence: each saves about half of one process's bytes."""
    rows = bench.cp_memory(32, 2, HIDDEN, ks=(2,))
    assert sorted({(r["k"], r["rank"]) for r in rows}) == [(1, 0), (2, 0), (2, 1)]
    for mode in bench.MODES:
        assert 0.4 < bench.cp_ratio(rows, 2, mode) < 0.6, mode
