"""Trainer overhead: tokens/s of llmops_train against a bare PyTorch loop on the same model and batch.

Both run in this process, interleaved round by round (trainer, bare, trainer, bare, ...) so drift in a
shared machine's load hits both alike. The trainer is timed from its own per-step reports: the wall
time between the report of step ``warmup`` and the report of step ``steps - 1`` covers whole loop
iterations (data, forward/backward, clipping, optimizer, the cross-rank reduction, JSON lines and the
metrics file), with evaluation and checkpoints kept out of that window. The bare loop is nanoGPT's
inner loop: forward, backward, clip, AdamW step, zero_grad, nothing else.

    python bench/train.py                       # CPU, preset "small", ~2-3 minutes on 2 cores
    python bench/train.py --device cuda --preset 125m --batch-size 8 --seq-len 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for sub in ("cli", "operator", "training-jobs"):
    sys.path.insert(0, str(ROOT / sub))

import torch  # noqa: E402
import yaml  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from llmops_train import distributed as D  # noqa: E402
from llmops_train import loop  # noqa: E402
from llmops_train.__main__ import locate_inputs  # noqa: E402
from llmops_train.config import read_job, resolve  # noqa: E402
from llmops_train.data import pack, read_documents  # noqa: E402
from llmops_train.modeling import build_preset  # noqa: E402

CORPUS = ROOT / "training-jobs" / "llmops_train" / "data" / "corpus.txt"


def write_job(path: Path, a: argparse.Namespace) -> Path:
    spec = {
        "model": {"preset": a.preset},
        "data": {"train": str(CORPUS), "validationSplit": 0},
        "hyperparameters": {
            "maxSteps": a.steps,
            "batchSize": a.batch_size,
            "sequenceLength": a.seq_len,
            "learningRate": 3e-4,
            "warmupSteps": 2,
            "precision": "bf16",
            "evalInterval": 10**6,
            "seed": 1,
        },
        "resources": {"accelerator": "cpu" if a.device == "cpu" else "nvidia-gpu"},
        "checkpoint": {"interval": 10**6, "keep": 1},
        "output": {"location": "pvc://bench/model"},
    }
    doc = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "bench"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class TimedReporter(loop.Reporter):
    """The trainer's own reporter, stamping the wall-clock time of each step's report."""

    stamps: dict[int, tuple[float, float]] = {}

    def log(self, record: dict) -> None:
        super().log(record)
        if "loss" in record:
            TimedReporter.stamps[record["step"]] = clocks()


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds. On a shared CPU box the process's CPU time is far steadier than the wall
    clock (other tenants' load mostly shows up as waiting), so both are reported."""
    return time.perf_counter(), time.process_time()


def rates(tokens: int, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    return tokens / (end[0] - start[0]), tokens / (end[1] - start[1])


def trainer_round(work: Path, tokenizer_dir: Path, a: argparse.Namespace) -> tuple[float, float]:
    """One trainer run; (wall, CPU) tokens/s over steps warmup..steps-1."""
    ckpt = work / "ckpt"
    shutil.rmtree(ckpt, ignore_errors=True)
    shutil.copytree(tokenizer_dir, ckpt / "tokenizer")  # train the BPE once, outside the timing
    cfg = resolve(
        read_job(write_job(work / "job.yaml", a)),
        output=str(work / "out"),
        checkpoint_dir=str(ckpt),
        device=a.device,
        cuda_available=torch.cuda.is_available(),
    )
    d = D.init(cfg.device)
    TimedReporter.stamps = {}
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try:
            loop.run(cfg, locate_inputs(cfg, d), d)
        finally:
            sys.stdout = stdout
    s = TimedReporter.stamps
    return rates((a.steps - 1 - a.warmup) * a.batch_size * a.seq_len, s[a.warmup], s[a.steps - 1])


def bare_round(blocks: torch.Tensor, tokenizer, a: argparse.Namespace) -> tuple[float, float]:
    """The minimal loop on the same model, batch and optimizer; (wall, CPU) tokens/s over the same steps."""
    loop.seed_everything(1, a.device)  # the trainer's determinism settings, for a like-for-like loop
    device = torch.device(a.device)
    model = build_preset(a.preset, tokenizer, seed=1).to(device)
    model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if a.device == "cuda" else None
    g = torch.Generator().manual_seed(1)
    model.train()
    for step in range(a.steps - 1):
        if step == a.warmup:
            if a.device == "cuda":
                torch.cuda.synchronize()
            t0 = clocks()
        x = blocks[torch.randint(len(blocks), (a.batch_size,), generator=g)].to(device)
        if amp is not None:
            with amp:
                loss = model(input_ids=x, labels=x).loss
        else:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the one host sync any loop that logs its loss pays
    if a.device == "cuda":
        torch.cuda.synchronize()
    return rates((a.steps - 1 - a.warmup) * a.batch_size * a.seq_len, t0, clocks())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=16, help="steps per round (the first --warmup are not timed)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is steadiest on a shared machine)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["LLMOPS_PVC_ROOT"] = str(work / "pvc")
        loop.Reporter = TimedReporter  # the loop builds its reporter by this name
        tok_dir = work / "tokenizer"
        from llmops_core.api.presets import PRESETS
        from llmops_train.tokenizer import train_bpe

        docs = read_documents([CORPUS], "text", "text")
        train_bpe(docs, PRESETS[a.preset].vocab_size, tok_dir)
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        blocks = pack(docs, tokenizer, a.seq_len)
        wall, cpu = [], []  # per-round trainer/bare ratios
        for r in range(a.rounds):
            # ABBA order: a load change during the round biases neither side.
            order = ("trainer", "bare") if r % 2 == 0 else ("bare", "trainer")
            res = {}
            for name in order:
                res[name] = (
                    trainer_round(work, tok_dir, a) if name == "trainer" else bare_round(blocks, tokenizer, a)
                )
            wall.append(res["trainer"][0] / res["bare"][0])
            cpu.append(res["trainer"][1] / res["bare"][1])
            print(
                f"round {r + 1}: wall tok/s trainer {res['trainer'][0]:,.0f} bare {res['bare'][0]:,.0f} "
                f"(ratio {wall[-1]:.3f})   CPU-time tok/s trainer {res['trainer'][1]:,.0f} "
                f"bare {res['bare'][1]:,.0f} (ratio {cpu[-1]:.3f})",
                flush=True,
            )
    print(
        f"\npreset={a.preset} batch={a.batch_size} seq={a.seq_len} device={a.device} "
        f"threads={torch.get_num_threads()} rounds={a.rounds} timed steps/round={a.steps - 1 - a.warmup}"
    )
    for label, ratios in (("wall clock", wall), ("CPU time", cpu)):
        m = statistics.median(ratios)
        print(
            f"{label:>10}: median trainer/bare = {m:.3f} (overhead {100 * (1 - m):+.1f}%), "
            f"rounds {min(ratios):.3f}..{max(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
