"""The training half of the lecture's complexity table, measured on CPU.

Claim (N = sequence length, L = decoder layers):

    | metric        | training   | training + checkpointing |
    | peak memory   | O(N L)     | O(sqrt(L) N)             |
    | runtime       | O(N^2 L)   | O(2 N^2 L)               |
    | forward calls | 1          | 2                        |

A small Llama decoder (``transformers.LlamaConfig``, eager attention so the N^2 score matrices are
really computed and stored) takes one training step (forward + backward) in three modes:

* ``vanilla``: no checkpointing, every layer keeps its activations for backward;
* ``per-layer``: transformers' ``activation_checkpointing_enable()`` (what
  ``gradient_checkpointing_enable()`` does), which keeps every layer's *input*: O(N L), a smaller constant;
* ``sqrt``: the lecture's scheme, segments of ~sqrt(L) layers checkpointed as a whole
  (``checkpoint_sequential``-style): L/k segment inputs plus one segment's activations during its
  recompute, minimised at k = sqrt(L) when a layer's internals are about the size of its input (the
  lecture's model), giving O(sqrt(L) N). Real blocks keep far more than their input, so per-layer
  checkpointing uses less memory at moderate L; docs/benchmarks-train-complexity.md explains.

What is measured, per (N, L, mode):

* peak activation memory = peak of the bytes held for backward, counted with
  ``torch.autograd.graph.saved_tensors_hooks`` (live storages, deduplicated, parameters excluded),
  over the whole step including the recompute in backward. Checkpointing uses ``use_reentrant=True``
  so that the recompute's saved tensors also pass through the hooks.
* step time = median of a few forward+backward steps after a warm-up, the three modes interleaved;
  process CPU time with one intra-op thread (robust when other jobs share the cores), wall time kept too.
* forward calls = decoder-layer forward computations per step, counted with a forward hook on every
  layer's MLP (transformers 5 checkpoints ``forward`` inside ``__call__``, so a hook on the layer
  itself fires once even when the layer is recomputed).

Exponents are least-squares slopes on log-log axes.

Context parallelism (the trainer's ``hyperparameters.contextParallel``): K gloo processes each hold
1/K of every sequence and exchange keys and values (``llmops_train.context``, its CPU all-gather
path). Claim: peak activation memory per rank O(N L / K). Measured: the same saved-for-backward peak
on every rank, for K = 2 and 4 at the same N and L, in each checkpointing mode, as a ratio to one
process (SDPA attention, K = 1), next to the prediction 1/K.

    python bench/train_complexity.py            # ~2 min on a shared 2-core VM
    python bench/train_complexity.py --quick    # ~15 s
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

MODES = ("vanilla", "per-layer", "sqrt")
ROOT = Path(__file__).resolve().parents[1]
VOCAB = 256


@dataclass
class Measurement:
    """One (mode, N, L) point."""

    mode: str
    n: int
    layers: int
    peak_saved_mib: float
    seconds: float  # median process CPU time of a step: with 1 thread, the work, minus waiting for a core
    wall_seconds: float  # median wall-clock time of a step, for reference (inflated when the box is busy)
    forward_calls_per_layer: float


class Segment(torch.nn.Module):
    """Consecutive decoder layers checkpointed as one unit: only the segment's input is kept for backward."""

    def __init__(self, block: list[torch.nn.Module]):
        super().__init__()
        self.block = torch.nn.ModuleList(block)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        def run(h: torch.Tensor, **kw: Any) -> torch.Tensor:
            for layer in self.block:
                h = layer(h, **kw)
            return h

        # Reentrant: keyword arguments (mask, rotary cos/sin, no grad needed) travel in the closure.
        return checkpoint(partial(run, **kwargs), hidden_states, use_reentrant=True)


def segment_size(layers: int) -> int:
    """The lecture's checkpoint interval: ~sqrt(L) layers per segment."""
    return max(1, round(math.sqrt(layers)))


def build_model(
    layers: int, seq_len: int, hidden: int = 128, heads: int = 4, attn: str = "eager"
) -> torch.nn.Module:
    """A small Llama decoder; the same weights serve every mode so modes differ only in checkpointing."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, vocab_size=VOCAB, max_position_embeddings=seq_len, use_cache=False,
        attn_implementation=attn,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).train()
    model.bench_layers = model.model.layers  # the plain layer list, restored by set_mode
    return model


def set_mode(model: torch.nn.Module, mode: str) -> None:
    """Switch the model between vanilla, per-layer (transformers) and sqrt(L)-segment checkpointing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.activation_checkpointing_disable()
        model.model.layers = model.bench_layers
        if mode == "per-layer":
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
        elif mode == "sqrt":
            layers, k = list(model.bench_layers), segment_size(len(model.bench_layers))
            model.model.layers = torch.nn.ModuleList(
                Segment(layers[i : i + k]) for i in range(0, len(layers), k)
            )
        elif mode != "vanilla":
            raise ValueError(f"unknown mode {mode!r}")


class SavedTensorMeter:
    """Live and peak bytes of tensors autograd holds for backward, storages counted once.

    A tensor is released when autograd drops its packed handle (after its node ran in backward),
    so ``peak`` is the high-water mark of activation memory over forward, recompute and backward.
    """

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.live: dict[int, list[int]] = {}  # storage address -> [references, bytes]
        self.current = 0
        self.peak = 0

    def pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key in self.exclude or key == 0:
            return tensor
        entry = self.live.setdefault(key, [0, storage.nbytes()])
        if entry[0] == 0:
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return _Held(self, key, tensor)

    def unpack(self, packed: Any) -> torch.Tensor:
        return packed.tensor if isinstance(packed, _Held) else packed

    def release(self, key: int) -> None:
        entry = self.live[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[key]


class _Held:
    """A saved tensor's handle; its deletion is the moment autograd lets go of the tensor."""

    __slots__ = ("key", "meter", "tensor")

    def __init__(self, meter: SavedTensorMeter, key: int, tensor: torch.Tensor):
        self.meter, self.key, self.tensor = meter, key, tensor

    def __del__(self) -> None:
        self.meter.release(self.key)


def train_step(model: torch.nn.Module, input_ids: torch.Tensor) -> None:
    """One forward + backward on a causal-LM loss; gradients dropped first so every step allocates alike."""
    model.zero_grad(set_to_none=True)
    model(input_ids=input_ids, labels=input_ids).loss.backward()


def count_layer_forwards(model: torch.nn.Module) -> list[int]:
    """Hook every decoder layer's MLP (runs once per layer computation, recompute included)."""
    counter = [0]
    for layer in model.bench_layers:
        layer.mlp.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def measure_step(
    layers: int,
    seq_len: int,
    repeats: int = 3,
    hidden: int = 128,
    attn: str = "eager",
    modes: tuple[str, ...] = MODES,
) -> list[Measurement]:
    """Every mode at one (N, L): one instrumented step for memory and calls, then interleaved timed steps.

    Timing runs without the hooks (their Python overhead would blur the ratios); memory does not
    depend on timing, so one instrumented step is enough.
    """
    model = build_model(layers, seq_len, hidden=hidden, attn=attn)
    counter = count_layer_forwards(model)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    input_ids = torch.randint(0, VOCAB, (1, seq_len), generator=torch.Generator().manual_seed(0))
    peaks: dict[str, float] = {}
    calls: dict[str, float] = {}
    for mode in modes:
        set_mode(model, mode)
        train_step(model, input_ids)  # warm-up
        meter = SavedTensorMeter(params)
        counter[0] = 0
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
            train_step(model, input_ids)
        peaks[mode], calls[mode] = meter.peak / 2**20, counter[0] / layers
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    wall: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(repeats):
        for mode in modes:
            set_mode(model, mode)
            start, start_cpu = time.perf_counter(), time.process_time()
            train_step(model, input_ids)
            cpu[mode].append(time.process_time() - start_cpu)
            wall[mode].append(time.perf_counter() - start)

    def median(xs: list[float]) -> float:
        return statistics.median(xs) if xs else math.nan

    return [
        Measurement(mode, seq_len, layers, peaks[mode], median(cpu[mode]), median(wall[mode]), calls[mode])
        for mode in modes
    ]


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log y against log x, i.e. the p in y ~ x^p."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def sweep(seqs: list[int], depths: list[int], fixed_n: int, fixed_l: int, repeats: int, hidden: int) -> dict:
    """N at fixed L, then L at fixed N; progress on stderr so stdout stays the markdown table."""
    results: dict[str, list[dict]] = {"by_n": [], "by_l": []}
    for axis, points in (("by_n", [(n, fixed_l) for n in seqs]), ("by_l", [(fixed_n, d) for d in depths])):
        for n, depth in points:
            for m in measure_step(depth, n, repeats, hidden):
                results[axis].append(asdict(m))
                print(f"  N={n:5d} L={depth:2d} {m.mode:9s} saved={m.peak_saved_mib:8.2f} MiB "
                      f"cpu={m.seconds * 1e3:7.1f} ms wall={m.wall_seconds * 1e3:7.1f} ms calls/layer={m.forward_calls_per_layer:.0f}", file=sys.stderr)  # fmt: skip
    return results


def sdpa_memory(seqs: list[int], fixed_l: int, hidden: int) -> list[dict]:
    """Memory only, with SDPA attention (no stored N^2 scores): the regime the lecture's O(N L) assumes."""
    rows = []
    for n in seqs:
        rows += [asdict(m) for m in measure_step(fixed_l, n, repeats=0, hidden=hidden, attn="sdpa")]
    return rows


def cp_worker(rank: int, k: int, port: int, n: int, layers: int, hidden: int) -> dict[str, float]:
    """One rank of a K-way context-parallel step (gloo): peak saved MiB per mode on this rank."""
    for sub in ("operator", "training-jobs"):
        sys.path.insert(0, str(ROOT / sub))
    import torch.distributed as dist

    from llmops_train import context as cp

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=k)
    try:
        model = build_model(layers, n, hidden=hidden, attn="sdpa")
        lay = cp.layout(rank, k, k, "cpu", n)
        cp.enable(model, lay)
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        ids = torch.randint(0, VOCAB, (1, n), generator=torch.Generator().manual_seed(0))

        def step() -> None:
            model.zero_grad(set_to_none=True)
            with cp.shard(lay, ids) as (local, labels, pos):
                (cp.loss(model, local, labels, pos, n - 1) * k).backward()

        peaks = {}
        for mode in MODES:
            set_mode(model, mode)
            step()  # warm-up
            meter = SavedTensorMeter(params)
            with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
                step()
            peaks[mode] = meter.peak / 2**20
        return peaks
    finally:
        dist.destroy_process_group()


def cp_memory(n: int, layers: int, hidden: int, ks: tuple[int, ...] = (2, 4)) -> list[dict]:
    """Peak saved MiB per rank for K = 1 (one process) and each K (K processes), every mode."""
    rows = [
        {"k": 1, "rank": 0, "n": n, "layers": layers, "mode": m.mode, "peak_saved_mib": m.peak_saved_mib}
        for m in measure_step(layers, n, repeats=0, hidden=hidden, attn="sdpa")
    ]
    for k in ks:
        with socket.socket() as sock:  # a free port for this group's rendezvous
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        args = [str(a) for a in (k, port, n, layers, hidden)]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--cp-worker", str(r), *args], stdout=subprocess.PIPE, text=True
            )
            for r in range(k)
        ]
        for r, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=900)
            if proc.returncode:
                raise RuntimeError(f"context-parallel rank {r} of {k} exited {proc.returncode}")
            for mode, mib in json.loads(out.splitlines()[-1]).items():
                rows.append(
                    {"k": k, "rank": r, "n": n, "layers": layers, "mode": mode, "peak_saved_mib": mib}
                )
        print(f"  CP K={k} N={n} L={layers}: " + ", ".join(
            f"{m} {max(r['peak_saved_mib'] for r in rows if r['k'] == k and r['mode'] == m):.2f} MiB" for m in MODES
        ), file=sys.stderr)  # fmt: skip
    return rows


def cp_ratio(rows: list[dict], k: int, mode: str) -> float:
    """Largest per-rank peak at K over the one-process peak, same mode."""
    base = next(r["peak_saved_mib"] for r in rows if r["k"] == 1 and r["mode"] == mode)
    return max(r["peak_saved_mib"] for r in rows if r["k"] == k and r["mode"] == mode) / base


def _series(rows: list[dict], mode: str, axis: str, key: str) -> tuple[list[float], list[float]]:
    picked = [r for r in rows if r["mode"] == mode]
    return [r[axis] for r in picked], [r[key] for r in picked]


def table(results: dict) -> str:
    """The lecture's table with measured exponents and ratios next to the claims, as markdown."""

    def exp(axis: str, key: str, mode: str, rows: list[dict] | None = None) -> str:
        col = "n" if axis == "by_n" else "layers"
        return f"{fit_exponent(*_series(rows or results[axis], mode, col, key)):.2f}"

    def ratio(key: str, mode: str) -> str:
        rows = results["by_n"] + results["by_l"]
        base = {(r["n"], r["layers"]): r[key] for r in rows if r["mode"] == "vanilla"}
        values = [r[key] / base[(r["n"], r["layers"])] for r in rows if r["mode"] == mode]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    def calls(mode: str) -> str:
        values = {
            r["forward_calls_per_layer"] for r in results["by_n"] + results["by_l"] if r["mode"] == mode
        }
        return "/".join(f"{v:g}" for v in sorted(values))

    def row(label: str, claim_v: str, claim_c: str, cell: Any) -> str:
        return (
            f"| {label} | {claim_v} | {cell('vanilla')} | {claim_c} | {cell('per-layer')} | {cell('sqrt')} |"
        )

    lines = [
        "| metric | claimed: training | measured: vanilla | claimed: checkpointing | measured: per-layer ckpt | measured: sqrt(L) segments |",
        "| --- | --- | --- | --- | --- | --- |",
        row("peak memory ~ N^a (fixed L), eager attention", "1", "1", partial(exp, "by_n", "peak_saved_mib")),
        row("peak memory ~ L^b (fixed N)", "1", "0.5", partial(exp, "by_l", "peak_saved_mib")),
        row("peak memory / vanilla, median (range)", "1", "< 1", lambda m: "1" if m == "vanilla" else ratio("peak_saved_mib", m)),
        row("runtime ~ N^c (fixed L)", "2", "2", partial(exp, "by_n", "seconds")),
        row("runtime ~ L^d (fixed N)", "1", "1", partial(exp, "by_l", "seconds")),
        row("step time / vanilla, median (range)", "1", "~1.33 (4F/3F if bwd = 2F)", lambda m: "1" if m == "vanilla" else ratio("seconds", m)),
        row("forward calls per layer per step", "1", "2", calls),
    ]  # fmt: skip
    for k in sorted({r["k"] for r in results.get("cp", []) if r["k"] > 1}):
        lines.append(
            row(f"peak memory per rank, context parallel K={k} / K=1 (SDPA, N={results['cp'][0]['n']})",
                f"1/{k} = {1 / k:.2f}", f"1/{k} = {1 / k:.2f}", lambda m, k=k: f"{cp_ratio(results['cp'], k, m):.2f}")
        )  # fmt: skip
    if results.get("sdpa_by_n"):
        lines.insert(
            3,
            row("peak memory ~ N^a (fixed L), SDPA attention", "1", "1",
                partial(exp, "by_n", "peak_saved_mib", rows=results["sdpa_by_n"])),
        )  # fmt: skip
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[Path]:
    """Log-log plots of memory and time against N and L, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, label, name in (("peak_saved_mib", "peak saved-for-backward (MiB)", "memory"),
                             ("seconds", "forward+backward step, CPU s", "runtime")):  # fmt: skip
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, axis, col, title in ((axes[0], "by_n", "n", "vs sequence length N"),
                                     (axes[1], "by_l", "layers", "vs layers L")):  # fmt: skip
            for mode in MODES:
                xs, ys = _series(results[axis], mode, col, key)
                ax.loglog(xs, ys, "o-", label=f"{mode} (slope {fit_exponent(xs, ys):.2f})", base=2)
            if key == "peak_saved_mib" and axis == "by_n" and results.get("sdpa_by_n"):
                for mode in ("vanilla", "sqrt"):
                    xs, ys = _series(results["sdpa_by_n"], mode, col, key)
                    ax.loglog(xs, ys, "s--", label=f"{mode}, SDPA (slope {fit_exponent(xs, ys):.2f})", base=2)
            fixed = results[axis][0]["layers" if axis == "by_n" else "n"]
            ax.set_xlabel(col.upper() if col == "n" else "L")
            ax.set_ylabel(label)
            ax.set_title(f"{title} ({'L' if axis == 'by_n' else 'N'}={fixed})")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Llama decoder training step on CPU: {name}")
        fig.tight_layout()
        path = out / f"train-complexity-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Sweep, print the markdown table, write the plots (and optionally the raw JSON)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer, smaller sizes (< 1 min)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="directory for the PNG plots")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (1: on a shared 2-core box 2 threads ran 10x slower and noisier)",
    )  # fmt: skip
    parser.add_argument("--no-sdpa", action="store_true", help="skip the SDPA memory-only series")
    parser.add_argument("--cp", type=int, nargs="*", default=[2, 4], help="context-parallel K to measure")
    parser.add_argument(
        "--cp-worker", type=int, nargs=6, help=argparse.SUPPRESS
    )  # rank k port n layers hidden
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cp_worker:
        print(json.dumps(cp_worker(*args.cp_worker)), flush=True)
        # Skip interpreter finalization, as llmops_train.__main__.leave does: a gloo thread that frees
        # a Python tensor while Python finalizes aborts the process after a step that succeeded.
        os._exit(0)
    if args.quick:
        seqs, depths, fixed_n, fixed_l, repeats, hidden = [128, 256, 512], [1, 4, 9], 256, 4, 2, 128  # fmt: skip
    else:
        seqs, depths, fixed_n, fixed_l, repeats, hidden = [256, 512, 1024, 2048], [1, 4, 9, 16], 1024, 4, 5, 128  # fmt: skip
    start = time.perf_counter()
    results = sweep(seqs, depths, fixed_n, fixed_l, repeats, hidden)
    if not args.no_sdpa:
        results["sdpa_by_n"] = sdpa_memory(seqs, fixed_l, hidden)
    if args.cp:
        results["cp"] = cp_memory(seqs[-1], fixed_l, hidden, tuple(args.cp))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"\nN in {seqs} at L={fixed_l}; L in {depths} at N={fixed_n}; hidden={hidden}, 4 heads, batch 1, "
          f"{args.threads} threads, median CPU time of {repeats} timed steps; {time.perf_counter() - start:.0f} s")  # fmt: skip
    for path in plot(results, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
