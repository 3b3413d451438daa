"""GPU smoke check for llmops_serve: bf16 on CUDA, greedy determinism alone vs batched, tokens/s.

Needs no network and no model hub: it builds a small Llama from a config (briefly trained, so greedy
decoding has clear margins), starts the server on it with `--dtype bfloat16` on `cuda`, and through
the official openai client:

1. runs each prompt alone (greedy), then all of them at once, and compares the texts;
2. measures output tokens/s and TTFT at a few concurrency levels (streaming, ignore_eos);
3. optionally does the same against `transformers serve --continuous-batching` on the same model.

    python bench/serve_gpu_check.py [--hidden 1024 --layers 16] [--peer] [--out DIR]

Exit status 1 if the server does not run on CUDA or a request fails; determinism is reported (bf16
kernels may legitimately differ between batch shapes, so a mismatch is printed, not fatal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.serve_tiny import TEXT, build_tiny_model  # noqa: E402

PORT, PEER_PORT = 18531, 18532


def start(cmd: list[str], port: int, log: Path, env: dict) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    ready = "/ready" if "llmops_serve" in cmd else "/health"
    for _ in range(1800):
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready in 180 s")


def body(model: str, peer: bool, max_tokens: int) -> dict:
    extra = {"generation_config": json.dumps({"do_sample": False})} if peer else {"ignore_eos": True}
    return {"model": model, "max_tokens": max_tokens, "temperature": 0, "extra_body": extra}


async def greedy_texts(url: str, model: str, prompts: list[str], peer: bool, max_tokens: int) -> tuple:
    import openai

    c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)

    async def one(p: str) -> str:
        r = await c.completions.create(prompt=p, **body(model, peer, max_tokens))
        return r.choices[0].text

    alone = [await one(p) for p in prompts]
    together = await asyncio.gather(*(one(p) for p in prompts))
    return alone, list(together)


async def load(
    url: str, model: str, prompts: list[str], concurrency: int, peer: bool, max_tokens: int
) -> dict:
    import openai

    c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
    queue = list(prompts)
    ttfts, tokens = [], 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            p = queue.pop()
            t0 = time.perf_counter()
            stream = await c.completions.create(
                prompt=p, stream=True, stream_options={"include_usage": True}, **body(model, peer, max_tokens)
            )
            first = None
            async for chunk in stream:
                if first is None and chunk.choices:
                    first = time.perf_counter() - t0
                if chunk.usage:
                    tokens += chunk.usage.completion_tokens
            ttfts.append(first)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ttfts.sort()
    return {
        "concurrency": concurrency,
        "requests": len(prompts),
        "output_tok_s": round(tokens / wall, 1),
        "ttft_p50_ms": round(1000 * ttfts[len(ttfts) // 2], 1),
    }


def check(name: str, url: str, model: str, prompts: list[str], args: argparse.Namespace, peer: bool) -> dict:
    alone, together = asyncio.run(greedy_texts(url, model, prompts[:32], peer, args.max_tokens))
    same = sum(a == b for a, b in zip(alone, together, strict=True))
    prefix = [
        next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        for a, b in zip(alone, together, strict=True)
    ]
    out = {
        "server": name,
        "greedy_identical_alone_vs_batched": f"{same}/{len(alone)}",
        "shortest_common_prefix_chars": min(prefix),
        "distinct_outputs": len(set(alone)),
        "load": [],
    }
    for c in args.concurrency:
        n = max(2 * c, 32)
        row = asyncio.run(
            load(url, model, [prompts[i % len(prompts)] for i in range(n)], c, peer, args.max_tokens)
        )
        out["load"].append(row)
        print(name, json.dumps(row), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument(
        "--peer", action="store_true", help="also measure transformers serve --continuous-batching"
    )
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "llmops-gpu-check")
    p.add_argument("--cpu", action="store_true", help="dry run of the script itself on CPU (float32)")
    args = p.parse_args()

    import torch

    device, dtype = ("cpu", "float32") if args.cpu else ("cuda", "bfloat16")
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: this check is for a GPU machine", file=sys.stderr)
        return 1
    print(
        "device:",
        "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "torch",
        torch.__version__,
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = args.out / f"llama-h{args.hidden}-l{args.layers}"
    if not (model_dir / "model.safetensors").exists():
        build_tiny_model(model_dir, hidden=args.hidden, layers=args.layers, heads=args.hidden // 64, steps=20)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(TEXT * 4)["input_ids"]
    prompts = [tok.decode(ids[i : i + 24]) for i in range(0, len(ids) - 24, 5)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / d) for d in ("inference-service", "operator")),
    }
    env["HF_HUB_OFFLINE"] = "1"
    results = {}
    cmd = [
        sys.executable,
        "-m",
        "llmops_serve",
        "--model",
        str(model_dir),
        "--served-model-name",
        "gpu-check",
    ]
    cmd += ["--dtype", dtype, "--host", "127.0.0.1", "--port", str(PORT), "--cache-size", "0"]
    cmd += ["--max-batch-size", str(args.max_batch_size)]
    log = args.out / "llmops.log"
    proc = start(cmd, PORT, log, env)
    try:
        if device not in log.read_text():
            print(f"server did not load on {device}; log:\n{log.read_text()[-2000:]}", file=sys.stderr)
            return 1
        results["llmops"] = check(
            "llmops", f"http://127.0.0.1:{PORT}", "gpu-check", prompts, args, peer=False
        )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if args.peer:
        peer_cmd = [str(Path(sys.executable).parent / "transformers"), "serve", "--continuous-batching"]
        peer_cmd += ["--host", "127.0.0.1", "--port", str(PEER_PORT), "--device", device, "--dtype", dtype]
        peer_cmd += [str(model_dir)]
        peer = start(peer_cmd, PEER_PORT, args.out / "transformers.log", env)
        try:
            url = f"http://127.0.0.1:{PEER_PORT}"
            results["transformers"] = check("transformers", url, str(model_dir), prompts, args, peer=True)
        finally:
            peer.terminate()
            peer.wait(timeout=60)
    print(json.dumps(results, indent=1))
    (args.out / "gpu-check.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
