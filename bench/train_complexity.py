"""The training half of the lecture's complexity table, measured.

Claim (N = sequence length, L = layers):

    | metric        | training | training + checkpointing |
    | peak memory   | O(N L)   | O(sqrt(L) N)             |
    | runtime       | O(N^2 L) | O(2 N^2 L)               |
    | forward calls | 1        | 2                        |

We train a Llama decoder (transformers, SDPA attention) for one step at several N and L in three
modes: ``vanilla``; ``per-layer`` checkpointing (every layer's input kept, what
``gradient_checkpointing_enable()`` and the trainer's ``activationCheckpointing`` do); and ``sqrt``
checkpointing (segments of ceil(sqrt(L)) layers, the lecture's scheme). Each measurement runs in a
fresh process: peak memory is the resident-set growth during the step (sampled every millisecond,
gradients already allocated, so what grows is activations); time is the median of a few steps;
forward calls are counted per decoder layer with hooks. Exponents are least-squares fits on log-log.

    python bench/train_complexity.py            # ~3 min on 2 cores
    python bench/train_complexity.py --quick    # ~1 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

MODES = ("vanilla", "per-layer", "sqrt")


def build_model(layers: int, seq_len: int, mode: str, hidden: int = 128):
    """A small Llama with its decoder layers grouped into checkpointed segments (or not)."""
    import torch
    from torch.utils.checkpoint import checkpoint
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=512, max_position_embeddings=seq_len, attn_implementation="sdpa",
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    size = {"vanilla": 0, "per-layer": 1, "sqrt": math.ceil(math.sqrt(layers))}[mode]
    if size:

        class Segment(torch.nn.Module):
            """Runs consecutive decoder layers, keeping only the segment's input for backward."""

            def __init__(self, block: list[torch.nn.Module]):
                super().__init__()
                self.block = torch.nn.ModuleList(block)

            def forward(self, hidden_states, **kwargs):
                def run(h):
                    for layer in self.block:
                        h = layer(h, **kwargs)
                    return h

                return checkpoint(run, hidden_states, use_reentrant=False)

        layers_ = list(model.model.layers)
        model.model.layers = torch.nn.ModuleList(
            Segment(layers_[i : i + size]) for i in range(0, layers, size)
        )
    return model


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def measure_step(mode: str, seq_len: int, layers: int, repeats: int) -> dict[str, float]:
    """One configuration, in this process: activation memory, step time, forward calls per layer."""
    import torch
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    torch.set_num_threads(2)
    model = build_model(layers, seq_len, mode)
    calls = [0]
    for module in model.modules():
        if isinstance(module, LlamaDecoderLayer):
            module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    batch = torch.randint(0, 512, (1, seq_len))

    def step() -> None:
        model(input_ids=batch, labels=batch).loss.backward()

    step()  # warm-up: allocates the gradients, so what grows later is activations
    times, peaks = [], []
    for _ in range(repeats):
        calls[0] = 0
        base, peak, done = _rss(), [0], threading.Event()

        def sample(base: int = base, peak: list[int] = peak, done: threading.Event = done) -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss() - base)
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        done.set()
        sampler.join()
        peaks.append(peak[0])
    return {"seconds": statistics.median(times), "memory_mb": statistics.median(peaks) / 2**20,
            "forward_calls_per_layer": calls[0] / layers}  # fmt: skip


# A fixed mmap threshold stops glibc from raising it after the warm-up step frees its activations;
# large blocks are then always mapped and unmapped, so RSS tracks what tensors hold.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def run_isolated(mode: str, seq_len: int, layers: int, repeats: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", mode, str(seq_len), str(layers), str(repeats)],
        capture_output=True, text=True, check=True, env={**os.environ, **MALLOC_ENV},
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log y against log x: y ~ x^slope."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def sweep(seqs: list[int], depths: list[int], fixed_n: int, fixed_l: int, repeats: int) -> dict:
    """Every mode at every size, modes interleaved so machine noise hits them alike."""
    results: dict = {"by_n": {m: [] for m in MODES}, "by_l": {m: [] for m in MODES}}
    for n in seqs:
        for mode in MODES:
            results["by_n"][mode].append({"n": n, "l": fixed_l, **run_isolated(mode, n, fixed_l, repeats)})
            print(f"  N={n:5d} L={fixed_l:2d} {mode:9s} {results['by_n'][mode][-1]}", file=sys.stderr)
    for depth in depths:
        for mode in MODES:
            results["by_l"][mode].append(
                {"n": fixed_n, "l": depth, **run_isolated(mode, fixed_n, depth, repeats)}
            )
            print(f"  N={fixed_n:5d} L={depth:2d} {mode:9s} {results['by_l'][mode][-1]}", file=sys.stderr)
    return results


def table(results: dict) -> str:
    def exp(axis: str, mode: str, key: str) -> str:
        rows = results[f"by_{axis}"][mode]
        return f"{fit_exponent([r[axis] for r in rows], [r[key] for r in rows]):.2f}"

    def ratio(key: str, mode: str) -> str:
        rows = results["by_n"][mode] + results["by_l"][mode]
        base = results["by_n"]["vanilla"] + results["by_l"]["vanilla"]
        return f"{statistics.median(r[key] / b[key] for r, b in zip(rows, base, strict=True)):.2f}"

    calls = {m: statistics.median(r["forward_calls_per_layer"] for r in results["by_n"][m]) for m in MODES}
    lines = [
        "| metric | claimed: training | measured: vanilla | claimed: checkpointing | measured: per-layer | measured: sqrt(L) segments |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| peak memory, exponent of N | 1 (O(NL)) | {exp('n', 'vanilla', 'memory_mb')} | 1 (O(sqrt(L)N)) | {exp('n', 'per-layer', 'memory_mb')} | {exp('n', 'sqrt', 'memory_mb')} |",
        f"| peak memory, exponent of L | 1 | {exp('l', 'vanilla', 'memory_mb')} | 0.5 | {exp('l', 'per-layer', 'memory_mb')} | {exp('l', 'sqrt', 'memory_mb')} |",
        f"| peak memory vs vanilla (median ratio) | 1 | 1.00 | < 1 | {ratio('memory_mb', 'per-layer')} | {ratio('memory_mb', 'sqrt')} |",
        f"| runtime, exponent of N | 2 (O(N^2 L)) | {exp('n', 'vanilla', 'seconds')} | 2 (O(2N^2 L)) | {exp('n', 'per-layer', 'seconds')} | {exp('n', 'sqrt', 'seconds')} |",
        f"| runtime, exponent of L | 1 | {exp('l', 'vanilla', 'seconds')} | 1 | {exp('l', 'per-layer', 'seconds')} | {exp('l', 'sqrt', 'seconds')} |",
        f"| step time vs vanilla (median ratio) | 1 | 1.00 | 2x forward = ~1.33x step | {ratio('seconds', 'per-layer')} | {ratio('seconds', 'sqrt')} |",
        f"| forward calls per layer per step | 1 | {calls['vanilla']:.0f} | 2 | {calls['per-layer']:.0f} | {calls['sqrt']:.0f} |",
    ]  # fmt: skip
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, label, name in (("memory_mb", "peak activation memory (MiB)", "memory"),
                             ("seconds", "step time (s)", "runtime")):  # fmt: skip
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, axis, title in ((axes[0], "n", "vs sequence length N"), (axes[1], "l", "vs layers L")):
            for mode in MODES:
                rows = results[f"by_{axis}"][mode]
                ax.loglog([r[axis] for r in rows], [r[key] for r in rows], "o-", label=mode, base=2)
            ax.set_xlabel(axis.upper())
            ax.set_ylabel(label)
            ax.set_title(title)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = out / f"train-complexity-{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer, smaller sizes (~1 min)")
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="where the PNG plots go")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", nargs=4, metavar=("MODE", "N", "L", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        mode, n, depth, repeats = args.worker
        print(json.dumps(measure_step(mode, int(n), int(depth), int(repeats))))
        return
    if args.quick:
        results = sweep([128, 256, 512], [2, 4, 8], fixed_n=256, fixed_l=4, repeats=1)
    else:
        results = sweep([256, 512, 1024, 2048], [2, 4, 8, 16], fixed_n=1024, fixed_l=8, repeats=2)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(table(results))
    for path in plot(results, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
