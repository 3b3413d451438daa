"""Engine alone (no HTTP): the server's forward path against the previous one, side by side.

Two copies of the same Llama in one process: "packed" (every decoder linear packed for oneDNN,
transformers' forward for every step) and "fused" (q/k/v and gate/up fused, then packed, prefill
and decode through `llama_fused.LeanLlama`: what the server runs). Each serves the same B sequences of
32 + 64 greedy tokens through `Engine.step()`, alternating, several times; the median tokens/s of
each and their ratio are printed, and the greedy tokens must be identical. "fused, all threads" is the
fused model with every decode step on all intra-op threads (``serial_decode_macs=0``), against the
server's default of one thread for small steps (``engine.SERIAL_DECODE_MACS``).

    python bench/serve_engine.py [--hidden 256 --layers 4] [--batch 1 16 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the server runs (llmops_serve/__main__.py)

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "inference-service"), str(ROOT)]

from bench.serve_tiny import bench_model  # noqa: E402
from llmops_serve.engine import Engine, Sequence  # noqa: E402
from llmops_serve.llama_fused import fuse_llama  # noqa: E402
from llmops_serve.packed_linear import pack_linears  # noqa: E402
from llmops_serve.sampling import SamplingParams  # noqa: E402


def run(model, tok, prompts: list[list[int]], out_len: int, **options: int) -> tuple[float, list[list[int]]]:
    """Tokens/s of generating out_len tokens for every prompt at once, and the tokens."""
    engine = Engine(model, tok, max_batch_size=len(prompts), max_prefill_tokens=len(prompts) * 64, **options)
    loop = asyncio.new_event_loop()
    try:
        params = SamplingParams(max_tokens=out_len, temperature=0.0, ignore_eos=True)
        seqs = [Sequence(p, params, loop, asyncio.Queue()) for p in prompts]
        engine.waiting.extend(seqs)
        start = time.perf_counter()
        while engine.waiting or engine.running:
            engine.step()
        seconds = time.perf_counter() - start
    finally:
        loop.close()
    return len(prompts) * out_len / seconds, [s.output_ids for s in seqs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "llmops-bench-serve")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = bench_model(
        args.out, args.hidden, args.layers, args.intermediate, args.train_steps
    )  # serve.py's
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    models = {}
    params = AutoModelForCausalLM.from_pretrained(model_dir).num_parameters()  # before packing
    for name in ("packed", "fused"):
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        if name == "fused":
            assert fuse_llama(model)
        pack_linears(model)
        models[name] = model
    print(f"{params / 1e6:.1f}M parameters, {torch.get_num_threads()} threads")
    print(
        "| batch | packed tok/s | fused, all threads tok/s | fused tok/s | fused / packed "
        "| fused / all threads | greedy tokens identical |"
    )
    print("|---|---|---|---|---|---|---|")
    variants = {
        "packed": ("packed", {}),
        "all threads": ("fused", {"serial_decode_macs": 0}),
        "fused": ("fused", {}),
    }
    g = torch.Generator().manual_seed(0)
    for batch in args.batch:
        prompts = torch.randint(3, len(tok), (batch, 32), generator=g).tolist()
        speeds: dict[str, list[float]] = {name: [] for name in variants}
        tokens = {}
        run(models["fused"], tok, prompts[:2], 4)  # warm-up
        for _ in range(args.repeats):
            for name, (model, options) in variants.items():
                speed, tokens[name] = run(models[model], tok, prompts, 64, **options)
                speeds[name].append(speed)
        a, t, b = (statistics.median(speeds[name]) for name in variants)
        same = tokens["packed"] == tokens["fused"] == tokens["all threads"]
        print(
            f"| {batch} | {a:.0f} | {t:.0f} | {b:.0f} | **{b / a:.2f}x** | **{b / t:.2f}x** "
            f"| {'yes' if same else 'NO'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
