"""The training loop: set up, resume, train, evaluate, checkpoint, export. Read top to bottom."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from llmops_core.api.presets import PRESETS

from . import checkpoint as ckpt
from . import context as cp
from . import data as data_mod
from . import distributed as D
from .config import InputError, RunConfig
from .export import export
from .modeling import build_preset, load_base
from .progress import ConfigMapReporter, Reporter, format_eta
from .tokenizer import train_bpe

log = logging.getLogger("llmops_train")
MAX_BAD_STEPS = 5  # consecutive non-finite losses before giving up


class TrainingFailed(Exception):
    """A run that started but cannot go on (e.g. the loss diverged)."""


@dataclass(frozen=True)
class Inputs:
    """Local paths of what the job reads, resolved and checked before any heavy work."""

    train_files: list[Path]
    validation_files: list[Path] | None
    base_dir: Path | None


# --- setup ---------------------------------------------------------------------------------------


def seed_everything(seed: int, device: str) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device == "cpu":  # bit-exact resume on CPU; on GPUs we keep the fast kernels
        torch.use_deterministic_algorithms(True)


def load_tokenizer(
    cfg: RunConfig, inputs: Inputs, docs: list[str], d: D.Dist, latest: Path | None
) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, or a preset's BPE: the verified copy inside the checkpoint being
    resumed, else trained afresh by rank 0 on this run's data and shared through the checkpoint
    directory. A tokenizer left there by an earlier attempt is never reused: it may be truncated or
    trained on other data, and nothing vouches for it."""
    if inputs.base_dir is not None:
        tok = AutoTokenizer.from_pretrained(inputs.base_dir)
    elif latest is not None:
        if not (latest / "tokenizer" / "tokenizer.json").is_file():
            raise ckpt.CheckpointMismatch(
                f"checkpoint {latest} has no tokenizer/ for preset {cfg.spec.model.preset}"
            )
        tok = AutoTokenizer.from_pretrained(latest / "tokenizer")
    else:
        tok_dir = cfg.checkpoint_dir / "tokenizer"
        if d.main:
            tmp = cfg.checkpoint_dir / ".tmp-tokenizer"
            shutil.rmtree(tmp, ignore_errors=True)
            train_bpe(docs, PRESETS[cfg.spec.model.preset].vocab_size, tmp)
            shutil.rmtree(tok_dir, ignore_errors=True)
            tmp.rename(tok_dir)
        D.barrier()
        tok = AutoTokenizer.from_pretrained(tok_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def make_model(cfg: RunConfig, inputs: Inputs, tokenizer: PreTrainedTokenizerBase) -> torch.nn.Module:
    if inputs.base_dir is not None:
        return load_base(inputs.base_dir, cfg.spec.model.lora)
    return build_preset(cfg.spec.model.preset, tokenizer, cfg.hp.seed)


def precision(cfg: RunConfig) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, use a grad scaler): bf16 on CUDA, fp16 + scaler where bf16 is missing, fp32 on CPU."""
    if cfg.device == "cpu" or cfg.hp.precision == "fp32":
        return None, False
    if cfg.hp.precision == "bf16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norms and biases are not decayed), as in nanoGPT."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.hp.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.hp.learning_rate, betas=(0.9, 0.95))


def lr_lambda(warmup: int, total: int, floor: float) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to ``floor`` x the peak at the last step."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def run_fingerprint(cfg: RunConfig, train_sha256: str, validation_sha256: str | None) -> dict[str, Any]:
    """What makes a checkpoint this run's: the model, the data (by content), the tokenization and the
    optimisation. Absent on purpose, so they may change between restarts: maxSteps, epochs, maxSeconds,
    batchSize, gradientAccumulation, precision, evaluation, early stopping, checkpointing, output,
    resources and world size (the data position counts sequences, so it survives them)."""
    spec, hp = cfg.spec, cfg.hp
    return {
        "model.preset": spec.model.preset,
        "model.base": spec.model.base,
        "model.lora": spec.model.lora.model_dump(by_alias=True) if spec.model.lora else None,
        "data.train.sha256": train_sha256,
        "data.validation.sha256": validation_sha256,
        "data.format": spec.data.format,
        "data.textField": spec.data.text_field,
        "data.validationSplit": spec.data.validation_split if spec.data.validation is None else None,
        "hyperparameters.sequenceLength": hp.sequence_length,
        "hyperparameters.learningRate": hp.learning_rate,
        "hyperparameters.minLearningRateRatio": hp.min_learning_rate_ratio,
        "hyperparameters.warmupSteps": hp.warmup_steps,
        "hyperparameters.weightDecay": hp.weight_decay,
        "hyperparameters.gradClip": hp.grad_clip,
        "hyperparameters.strategy": hp.strategy,
        "hyperparameters.seed": hp.seed,
    }


def evaluate_loss(
    wrapped: torch.nn.Module,
    model: torch.nn.Module,
    batches: list[data_mod.EvalBatch],
    d: D.Dist,
    lay: cp.Layout = cp.NONE,
) -> float | None:
    """Mean loss per held-out sequence over every rank's share: for a given set, the same number
    whatever the world size or the split into batches. Blocks have equal length, so a batch's mean
    loss times its real size is its sum; a rank with nothing left runs a zero-weight batch so FSDP's
    collectives stay in step. With context parallelism each rank's loss is its shard's share, so the
    shares add up and a batch is counted by its cp group's first rank only."""
    if not batches:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            ids = batch.blocks.to(d.device)
            loss = forward_loss(wrapped, lay, ids).item()
            total += loss * batch.weight
            count += batch.weight if lay.cp_rank == 0 else 0
    model.train()
    summed, n = D.all_sum([total, float(count)], d.device)
    return summed / n if n else None


def forward_loss(wrapped: torch.nn.Module, lay: cp.Layout, ids: torch.Tensor) -> torch.Tensor:
    """The batch's mean next-token loss, or with context parallelism this rank's share of it."""
    if not lay.enabled:
        return wrapped(input_ids=ids, labels=ids).loss
    with cp.shard(lay, ids) as (local, labels, pos):
        return cp.loss(wrapped, local, labels, pos, ids.shape[0] * (ids.shape[1] - 1))


def total_steps(cfg: RunConfig, micro_per_epoch: int) -> int:
    per_epoch = max(1, micro_per_epoch // cfg.hp.gradient_accumulation)
    limits = [cfg.max_steps] if cfg.max_steps else []
    if cfg.hp.epochs:
        limits.append(max(1, math.ceil(cfg.hp.epochs * per_epoch)))
    return min(limits) if limits else per_epoch


class StopFlag:
    """SIGTERM (node drain, spot reclaim) asks for a checkpoint at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


# --- the run -------------------------------------------------------------------------------------


def run(cfg: RunConfig, inputs: Inputs, d: D.Dist) -> str:
    """Train to completion (or a stop request); returns the final phase."""
    hp, spec = cfg.hp, cfg.spec
    stop = StopFlag()
    seed_everything(hp.seed, cfg.device)
    lay = cp.layout(d.rank, d.world, hp.context_parallel, cfg.device, hp.sequence_length)

    latest = None  # the checkpoint to resume from, found first: it also holds a preset's tokenizer
    if d.main:
        latest = ckpt.find_latest(cfg.checkpoint_dir)
        if latest is None and spec.checkpoint.s3:
            cfg.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            latest = ckpt.fetch_from_mirror(cfg.checkpoint_dir, spec.checkpoint.s3)
    latest = D.broadcast(latest)

    docs = data_mod.read_documents(inputs.train_files, spec.data.format, spec.data.text_field)
    val_docs = None
    if inputs.validation_files is not None:
        val_docs = data_mod.read_documents(inputs.validation_files, spec.data.format, spec.data.text_field)
    fingerprint = run_fingerprint(
        cfg,
        data_mod.digest(inputs.train_files),
        data_mod.digest(inputs.validation_files) if inputs.validation_files else None,
    )
    if latest is not None:  # every rank reads the same manifest, so all refuse together
        ckpt.check_fingerprint(latest, fingerprint)
    tokenizer = load_tokenizer(cfg, inputs, docs, d, latest)
    blocks = data_mod.pack(docs, tokenizer, hp.sequence_length)
    if val_docs is not None:
        train_blocks, val_blocks = blocks, data_mod.pack(val_docs, tokenizer, hp.sequence_length)
        if len(val_blocks) == 0:
            raise InputError(
                f"validation data {spec.data.validation} packs into no block of sequenceLength "
                f"{hp.sequence_length} tokens; add data or lower sequenceLength"
            )
    else:
        train_blocks, val_blocks = data_mod.split(blocks, spec.data.validation_split, hp.seed)
        if len(val_blocks) == 0 and spec.data.validation_split > 0:
            log.warning(
                "validationSplit %s of %d blocks holds out none: evaluation and early stopping are off",
                spec.data.validation_split,
                len(blocks),
            )
    # The ranks of a cp group read the same sequences: data is dealt out over the dp groups.
    loader = data_mod.BlockLoader(train_blocks, hp.batch_size, lay.dp_rank, lay.dp_world, hp.seed)
    evals = data_mod.eval_batches(val_blocks, hp.batch_size, lay.dp_rank, lay.dp_world, hp.eval_batches)
    steps = total_steps(cfg, loader.per_epoch)

    model = make_model(cfg, inputs, tokenizer).to(d.device)
    if hp.activation_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if lay.enabled:
        cp.enable(model, lay)
    sharded = hp.strategy == "fsdp" and d.world > 1
    wrapped = D.wrap(model, hp.strategy, d)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(hp.warmup_steps, steps, hp.min_learning_rate_ratio)
    )
    if hp.compile:
        wrapped = torch.compile(wrapped)
    amp_dtype, use_scaler = precision(cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    state = {
        "step": 0,
        "best_eval": math.inf,
        "bad_evals": 0,
        "seconds": 0.0,
        "loss": None,
        "eval_loss": None,
    }
    if latest is not None:
        trainer = ckpt.load(latest, model, optimizer, d)
        scheduler.load_state_dict(trainer["scheduler"])
        scaler.load_state_dict(trainer["scaler"])
        loader.load_position(data_mod.Position(**trainer["data"]))
        state.update(trainer["state"])
        log.info("resumed from %s at step %d", latest, state["step"])

    reporter = None
    if d.main:
        cm = ConfigMapReporter(cfg.progress_configmap, cfg.namespace) if cfg.progress_configmap else None
        reporter = Reporter(cfg.metrics_file, steps, state["step"], cm)

    def save() -> None:
        trainer = {
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "data": asdict(loader.position),
            "state": dict(state),
        }
        path = ckpt.save(
            cfg.checkpoint_dir,
            state["step"],
            model,
            optimizer,
            trainer,
            d,
            sharded,
            fingerprint=fingerprint,
            tokenizer=tokenizer if inputs.base_dir is None else None,
        )
        if d.main:
            ckpt.prune(cfg.checkpoint_dir, spec.checkpoint.keep)
            if spec.checkpoint.s3:
                ckpt.mirror(path, spec.checkpoint.s3)
            reporter.log({"event": "checkpoint", "step": state["step"], "checkpoint": str(path)})

    def evaluate() -> float | None:
        with autocast():
            return evaluate_loss(wrapped, model, evals, d, lay)

    def backward_context(batch: torch.Tensor):
        """Forward and backward of a micro-batch both run inside it: with context parallelism they
        need the sequence shard and the attention exchange."""
        if not lay.enabled:
            return contextlib.nullcontext(batch)
        return cp.shard(lay, batch)

    def step_loss(fed: Any) -> torch.Tensor:
        if not lay.enabled:
            return wrapped(input_ids=fed, labels=fed).loss
        ids, labels, pos = fed
        return cp.loss(wrapped, ids, labels, pos, ids.shape[0] * (hp.sequence_length - 1))

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(d.device.type, dtype=amp_dtype)

    try:
        model.train()
        phase, bad_steps = "Succeeded", 0
        budget = spec.hyperparameters.max_seconds
        tokens_per_step = hp.batch_size * hp.sequence_length * hp.gradient_accumulation * lay.dp_world
        while state["step"] < steps:
            t0 = time.perf_counter()
            loss_sum = 0.0
            for micro in range(hp.gradient_accumulation):
                batch = loader.next_batch().to(d.device, non_blocking=True)
                last = micro == hp.gradient_accumulation - 1
                if sharded:  # FSDP2: reduce-scatter gradients on the last micro-batch only
                    model.set_requires_gradient_sync(last)
                sync = (
                    wrapped.no_sync()
                    if (not last and hasattr(wrapped, "no_sync"))
                    else contextlib.nullcontext()
                )
                with sync, backward_context(batch) as fed:
                    with autocast():
                        loss = step_loss(fed) / hp.gradient_accumulation
                    # DDP/FSDP average gradients over the world; x K makes that a sum over each cp group.
                    scaler.scale(loss * lay.cp_world).backward()
                loss_sum += loss.detach().float().item()
            scaler.unscale_(optimizer)
            max_norm = hp.grad_clip if hp.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            grad_norm = float(
                norm.full_tensor() if hasattr(norm, "full_tensor") else norm
            )  # DTensor under FSDP
            # With a grad scaler an inf gradient is routine (it skips the step and rescales); a bad loss is not.
            bad_local = not math.isfinite(loss_sum) or (not use_scaler and not math.isfinite(grad_norm))
            summed_loss, bad, stop_votes = D.all_sum(
                [loss_sum, float(bad_local), float(stop.requested)], d.device
            )
            if bad:
                bad_steps += 1
                optimizer.zero_grad(set_to_none=True)
                log.warning(
                    "step %d: non-finite loss or gradient, update skipped (%d in a row)",
                    state["step"] + 1,
                    bad_steps,
                )
                if bad_steps >= MAX_BAD_STEPS:
                    raise TrainingFailed(
                        f"loss was not finite for {bad_steps} steps in a row; "
                        f"last good checkpoint kept in {cfg.checkpoint_dir}"
                    )
            else:
                bad_steps = 0
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            state["step"] += 1
            dt = time.perf_counter() - t0
            state["seconds"] += dt
            state["loss"] = summed_loss / lay.dp_world  # cp ranks hold shares of one loss
            step = state["step"]

            record = {
                "step": step,
                "loss": round(state["loss"], 6),
                "lr": lr,
                "grad_norm": round(grad_norm, 4),
                "tokens_per_second": round(tokens_per_step / dt, 1),
                "epoch": round(loader.epochs_done, 4),
                "eta": format_eta(state["seconds"] / max(1, step) * (steps - step)),
            }
            early_stop = False
            if step % hp.eval_interval == 0 or step == steps:
                eval_loss = evaluate()
                if eval_loss is not None:
                    record["eval_loss"] = state["eval_loss"] = round(eval_loss, 6)
                    es = hp.early_stopping
                    if eval_loss < state["best_eval"] - (es.min_delta if es else 0.0):
                        state["best_eval"], state["bad_evals"] = eval_loss, 0
                    else:
                        state["bad_evals"] += 1
                    early_stop = es is not None and state["bad_evals"] >= es.patience
            if reporter:
                reporter.log(record)

            out_of_time = budget is not None and state["seconds"] >= budget
            if stop_votes:
                phase = "Interrupted"
            done = step == steps or early_stop or out_of_time or stop_votes
            # During a streak of skipped updates the periodic checkpoint waits, so the newest stays a good one.
            if (step % spec.checkpoint.interval == 0 and bad_steps == 0) or done:
                save()
            if done:
                if early_stop and reporter:
                    reporter.log(
                        {"event": "early_stopping", "step": step, "best_eval_loss": state["best_eval"]}
                    )
                break

        if phase == "Succeeded":
            finish(cfg, model, tokenizer, inputs, d, sharded, reporter)
    except BaseException:  # the ConfigMap should say Failed, not stay Running
        if reporter:
            reporter.close("Failed")
        raise
    if reporter:
        reporter.close("Running" if phase == "Interrupted" else phase)
    return phase


def finish(
    cfg: RunConfig,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    inputs: Inputs,
    d: D.Dist,
    sharded: bool,
    reporter: Reporter | None,
) -> None:
    """Export the final model from rank 0 (FSDP shards are gathered into a plain CPU copy first)."""
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if d.main:
            model = make_model(cfg, inputs, tokenizer)
            model.load_state_dict(full)
    if d.main:
        where = export(model.cpu() if not sharded else model, tokenizer, cfg.output, cfg.cache_dir)
        reporter.log({"event": "exported", "step": reporter.state["step"], "output": where})
    D.barrier()
