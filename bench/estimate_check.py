"""`llmops estimate` against measurement: the trainer's model on CPU, and the server's KV cache.

Training: each case writes a small Llama (a Hugging Face directory) and runs, in a fresh process, the
trainer's own code path for it: ``llmops_train.modeling.load_base`` (with the job's LoRA through peft),
``activation_checkpointing`` as the trainer enables it, ``llmops_train.loop.make_optimizer`` from the
job's resolved config, then two optimizer steps as ``loop.run`` takes them (forward with labels,
backward, gradient clipping, AdamW step, ``zero_grad(set_to_none=True)``; the second step is the
steady state, with optimizer states allocated). The estimate is ``llmops_core.estimate.training_memory``
with ``device="cpu"`` (the trainer runs fp32 on CPU).

How peak memory is measured, and why: torch's CPU allocator keeps no statistics, so we read the
kernel's. The child pins glibc's mmap threshold (``MALLOC_MMAP_THRESHOLD_=65536``: every tensor over
64 KiB is its own mapping, returned to the kernel when freed, so resident memory follows live tensor
bytes instead of malloc's high-water heap), uses one intra-op thread, and after loading the model
resets the kernel's peak-RSS counter (``/proc/self/clear_refs`` 5). Measured peak = (RSS after
loading - before loading: the weights, which transformers maps from the safetensors file: we read them
once so that they are resident, as the first forward would make them) + (VmHWM after the steps - VmRSS at the reset: everything the steps
added at their worst moment). Unlike counting saved tensors this includes every transient
(logit gradients, optimizer temporaries), which is what decides whether a job fits.

KV cache: the bundled server's ``Engine`` prefills a batch of prompts and decodes a few tokens; the
bytes of its cache tensors (the live ``keys``/``values`` views, and the buffers behind them, which
grow geometrically) are compared with ``kv_cache_bytes``.

    python bench/estimate_check.py           # all cases, ~3 min on a shared 2-core VM
    python bench/estimate_check.py --quick   # the cases the test runs
    python bench/estimate_check.py --cuda    # on a GPU: bf16 autocast, torch.cuda.max_memory_allocated
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for sub in ("operator", "training-jobs", "inference-service"):
    sys.path.insert(0, str(ROOT / sub))

from llmops_core.estimate import (  # noqa: E402
    LoraPlan,
    ModelShape,
    TrainingPlan,
    kv_cache_bytes,
    training_memory,
)

MiB = 1024**2


@dataclass(frozen=True)
class Case:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    batch: int
    seq: int
    checkpointing: bool = False
    lora_rank: int = 0

    def shape(self) -> ModelShape:
        return ModelShape(self.hidden, self.layers, self.heads, self.kv_heads, self.intermediate, self.vocab)

    def plan(self) -> TrainingPlan:
        lora = LoraPlan(rank=self.lora_rank) if self.lora_rank else None
        return TrainingPlan(
            batch_size=self.batch,
            sequence_length=self.seq,
            precision="fp32",
            activation_checkpointing=self.checkpointing,
            lora=lora,
            device="cpu",
        )


QUICK = [
    Case("small b4 s256", 256, 4, 4, 4, 1024, 8192, 4, 256),
    Case("small b4 s256 ckpt", 256, 4, 4, 4, 1024, 8192, 4, 256, checkpointing=True),
    Case("small b4 s256 lora", 256, 4, 4, 4, 1024, 8192, 4, 256, lora_rank=8),
]
FULL = [
    *QUICK,
    Case("h512 L8 gqa b4 s512", 512, 8, 8, 2, 1536, 8192, 4, 512),
    Case("h512 L8 gqa b4 s512 lora", 512, 8, 8, 2, 1536, 8192, 4, 512, lora_rank=8),
    Case("small b2 s1024", 256, 4, 4, 4, 1024, 8192, 2, 1024),
    Case("h512 L8 gqa b4 s512 ckpt", 512, 8, 8, 2, 1536, 8192, 4, 512, checkpointing=True),
    Case("h512 L8 gqa b4 s512 lora ckpt", 512, 8, 8, 2, 1536, 8192, 4, 512, True, 8),
    Case("h768 L12 b2 s512 (125m-like)", 768, 12, 12, 12, 3072, 32000, 2, 512),
    Case("h768 L12 b2 s512 lora r16", 768, 12, 12, 12, 3072, 32000, 2, 512, lora_rank=16),
]


# --- child: one measured run -------------------------------------------------------------------


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def child(case: Case, model_dir: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    from llmops_core.api import load
    from llmops_train.config import resolve
    from llmops_train.loop import make_optimizer, seed_everything
    from llmops_train.modeling import load_base

    if case.lora_rank:
        import peft  # noqa: F401  (imported before the baseline: its code pages are not the model's)

    spec = {"preset": None, "base": str(model_dir)}
    if case.lora_rank:
        spec["lora"] = {"rank": case.lora_rank}
    job = load(
        {
            "apiVersion": "llmops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "estimate-check"},
            "spec": {
                "model": {k: v for k, v in spec.items() if v is not None},
                "data": {"train": "s3://unused/data/"},
                "hyperparameters": {
                    "batchSize": case.batch,
                    "sequenceLength": case.seq,
                    "precision": "fp32",
                    "activationCheckpointing": case.checkpointing,
                },
                "resources": {"accelerator": "cpu"},
                "output": {"location": "s3://unused/model/"},
            },
        }
    )
    cfg = resolve(job, checkpoint_dir=str(model_dir / "ckpt"))
    seed_everything(cfg.hp.seed, "cpu")
    _warm_up(cfg, model_dir)
    before = _status()
    model = load_base(model_dir, cfg.spec.model.lora)
    with torch.no_grad():  # fault the mapped weights in now (the first forward would), to weigh them
        for p in model.parameters():
            p.sum()
    if cfg.hp.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.train()
    optimizer = make_optimizer(model, cfg)
    batch = torch.randint(0, case.vocab, (case.batch, case.seq))
    Path("/proc/self/clear_refs").write_text("5")
    reset = _status()
    for _ in range(2):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.hp.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    end = _status()
    weights = reset["VmRSS"] - before["VmRSS"]
    return {"weights": weights, "peak": weights + end["VmHWM"] - reset["VmRSS"]}


def _warm_up(cfg, model_dir: Path) -> None:
    """One step of a tiny model through the same code, so that the kernels' code pages are resident
    before the baseline (they are shared library pages, not the workload's memory)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmops_train.loop import make_optimizer
    from llmops_train.modeling import load_base

    tiny = model_dir / "warm-up"
    LlamaForCausalLM(
        LlamaConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=64
        )
    ).save_pretrained(tiny)
    model = load_base(tiny, cfg.spec.model.lora)
    if cfg.hp.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    optimizer = make_optimizer(model, cfg)
    batch = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    model(input_ids=batch, labels=batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.hp.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _llama_config(case: Case) -> Any:
    """The Llama of ``case`` (untied embeddings, as the trainer's presets)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=case.hidden,
        num_hidden_layers=case.layers,
        num_attention_heads=case.heads,
        num_key_value_heads=case.kv_heads,
        intermediate_size=case.intermediate,
        vocab_size=case.vocab,
        max_position_embeddings=max(2048, case.seq),
        tie_word_embeddings=False,
    )


def _write_model(case: Case, where: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = _llama_config(case)
    LlamaForCausalLM(config).save_pretrained(where)


def measure_training(case: Case) -> dict:
    """Estimate and measurement for one case; the run happens in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as tmp:
        _write_model(case, Path(tmp))
        env = {
            **os.environ,
            "MALLOC_MMAP_THRESHOLD_": "65536",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(
                str(ROOT / s) for s in ("operator", "training-jobs", "inference-service")
            ),
        }
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(asdict(case)), tmp],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{case.name}: child failed: {out.stderr[-2000:]}")
        measured = json.loads(out.stdout.strip().splitlines()[-1])
    est = training_memory(case.shape(), case.plan())
    return {
        "case": case.name,
        "parameters": est.parameters,
        "trainable": est.trainable_parameters,
        "estimate_mib": est.peak / MiB,
        "naive_sum_mib": est.naive_sum / MiB,
        "measured_mib": measured["peak"] / MiB,
        "weights_measured_mib": measured["weights"] / MiB,
        "weights_estimate_mib": est.weights / MiB,
        "ratio": est.peak / measured["peak"],
    }


# --- KV cache ----------------------------------------------------------------------------------


def measure_kv(
    batch: int, prompt: int, new_tokens: int, layers: int = 4, kv_heads: int = 2, device: str = "cpu"
) -> dict:
    """Prefill ``batch`` prompts through the server's Engine, decode ``new_tokens``, weigh its cache."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from llmops_serve.engine import Engine, SamplingParams, Sequence
    from llmops_train.tokenizer import train_bpe

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        train_bpe(["the quick brown fox jumps over the lazy dog " * 50], 300, Path(tmp))
        tok = AutoTokenizer.from_pretrained(tmp)
    config = LlamaConfig(
        hidden_size=256,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=kv_heads,
        intermediate_size=512,
        vocab_size=len(tok),
        max_position_embeddings=4096,
    )
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # what the server's dtype auto picks
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    engine = Engine(model, tok, max_batch_size=batch, max_prefill_tokens=batch * prompt)
    loop = asyncio.new_event_loop()
    try:
        ids = torch.randint(3, len(tok), (batch, prompt)).tolist()
        params = SamplingParams(max_tokens=new_tokens + 100, temperature=0.0, ignore_eos=True)
        engine.waiting.extend(Sequence(p, params, loop, asyncio.Queue()) for p in ids)
        engine.step()  # admit and prefill all (a step that admits runs only the prefill)
        for _ in range(new_tokens):  # one decode each
            engine.step()
        layers_ = engine.cache.layers
        live = sum(t.numel() * t.element_size() for lay in layers_ for t in (lay.keys, lay.values))
        held = sum(t.untyped_storage().nbytes() for lay in layers_ for t in (lay._k, lay._v))
        context = engine.mask.shape[1]
    finally:
        loop.close()
    shape = ModelShape(256, layers, 8, kv_heads, 512, len(tok))
    est = kv_cache_bytes(shape, batch, context, torch.finfo(dtype).bits // 8)
    return {
        "case": f"b{batch} prompt {prompt} +{new_tokens}{' cuda bf16' if device == 'cuda' else ''}",
        "context": context,
        "estimate_mib": est / MiB,
        "live_mib": live / MiB,
        "buffers_mib": held / MiB,
        "ratio": est / live,
        "buffers_over_live": held / live,
    }


# --- on a GPU: torch's allocator statistics, bf16 autocast as the trainer runs there ------------

GPU_CASES = [
    Case("125m b8 s1024", 768, 12, 12, 12, 3072, 32000, 8, 1024),
    Case("125m b8 s1024 ckpt", 768, 12, 12, 12, 3072, 32000, 8, 1024, checkpointing=True),
    Case("350m b8 s2048", 1024, 24, 16, 16, 2816, 32000, 8, 2048),
    Case("350m b8 s2048 ckpt", 1024, 24, 16, 16, 2816, 32000, 8, 2048, checkpointing=True),
    Case("1b b4 s2048", 2048, 22, 32, 4, 5632, 32000, 4, 2048),
    Case("1b b4 s2048 ckpt", 2048, 22, 32, 4, 5632, 32000, 4, 2048, checkpointing=True),
    Case("1b b8 s4096 ckpt", 2048, 22, 32, 4, 5632, 32000, 8, 4096, checkpointing=True),
    Case("1b b4 s2048 lora r16", 2048, 22, 32, 4, 5632, 32000, 4, 2048, lora_rank=16),
    Case("1b b4 s2048 lora r16 ckpt", 2048, 22, 32, 4, 5632, 32000, 4, 2048, True, 16),
    Case("1b b1 s16384 ckpt", 2048, 22, 32, 4, 5632, 32000, 1, 16384, checkpointing=True),
    Case("350m b4 s4096 lora r8", 1024, 24, 16, 16, 2816, 32000, 4, 4096, lora_rank=8),
]


def measure_training_cuda(case: Case, precision: str = "bf16") -> dict:
    """The trainer's step on CUDA (its autocast dtype, AdamW with torch's CUDA defaults); peak from
    ``torch.cuda.max_memory_allocated`` after the model is on the device (the reset point)."""
    import torch
    from transformers import LlamaForCausalLM

    from llmops_train.loop import make_optimizer

    class _Cfg:  # the two fields make_optimizer reads, as the job resolves them
        class hp:
            weight_decay, learning_rate = 0.1, 3e-4

    torch.manual_seed(0)
    config = _llama_config(case)
    model = LlamaForCausalLM(config)
    if case.lora_rank:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=case.lora_rank, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM")
        )
    if case.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model = model.cuda().train()
    optimizer = make_optimizer(model, _Cfg)
    batch = torch.randint(0, case.vocab, (case.batch, case.seq), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    dtype = torch.bfloat16 if precision == "bf16" else None
    for _ in range(2):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del model, optimizer, loss
    torch.cuda.empty_cache()
    plan = replace(case.plan(), precision=precision, device="accelerator")
    est = training_memory(case.shape(), plan)
    return {
        "case": f"{case.name} {precision}",
        "parameters": est.parameters,
        "trainable": est.trainable_parameters,
        "estimate_mib": est.peak / MiB,
        "naive_sum_mib": est.naive_sum / MiB,
        "measured_mib": peak / MiB,
        "weights_measured_mib": base / MiB,
        "weights_estimate_mib": est.weights / MiB,
        "ratio": est.peak / peak,
    }


KV_QUICK = [(4, 128, 16), (8, 512, 8)]
KV_FULL = [*KV_QUICK, (16, 1024, 32), (2, 2000, 100)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cuda", action="store_true", help="measure on a GPU with torch's allocator statistics")
    ap.add_argument("--child", nargs=2, metavar=("CASE", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(Case(**json.loads(args.child[0])), Path(args.child[1]))))
        return
    if args.cuda:
        rows = [measure_training_cuda(c) for c in GPU_CASES]
        rows += [measure_training_cuda(c, "fp32") for c in GPU_CASES[:2]]
    else:
        rows = [measure_training(c) for c in (QUICK if args.quick else FULL)]
    print(
        f"{'training case':34} {'params':>10} {'trainable':>10} {'estimate':>9} {'measured':>9} {'ratio':>6} {'16B/param+act sum':>17}"
    )
    for r in rows:
        print(
            f"{r['case']:34} {r['parameters']:>10,} {r['trainable']:>10,} {r['estimate_mib']:>8.1f}M "
            f"{r['measured_mib']:>8.1f}M {r['ratio']:>6.3f} {r['naive_sum_mib']:>16.1f}M"
        )
    device = "cuda" if args.cuda else "cpu"
    kv = [measure_kv(*c, device=device) for c in (KV_QUICK if args.quick else KV_FULL)]
    print(
        f"\n{'KV cache case':26} {'context':>7} {'estimate':>9} {'live':>9} {'ratio':>6} {'buffers':>9} {'buf/live':>8}"
    )
    for r in kv:
        print(
            f"{r['case']:26} {r['context']:>7} {r['estimate_mib']:>8.2f}M {r['live_mib']:>8.2f}M "
            f"{r['ratio']:>6.3f} {r['buffers_mib']:>8.2f}M {r['buffers_over_live']:>8.2f}"
        )
    worst = max(abs(r["ratio"] - 1) for r in rows + kv)
    print(json.dumps({"training": rows, "kv_cache": kv, "worst_deviation": worst}))


if __name__ == "__main__":
    main()
