"""Fault-tolerant checkpoints: atomic, checksummed, last K kept, newest valid one found on start.

Layout under the checkpoint directory::

    tokenizer/                 preset tokenizer (trained once, reused on resume)
    step-00000500/             one complete checkpoint
        manifest.json          written last: step, format, world size, sha256 of every other file
        model.pt optimizer.pt  full state dicts (single process / DDP; LoRA: trainable weights only)
        dcp/                   torch.distributed.checkpoint shards instead, for FSDP
        trainer.pt             step, scheduler, data position, early-stopping state
        tokenizer/             a preset's tokenizer, so a checkpoint fetched from S3 is self-contained
        rng-rank0.pt ...       python, numpy, torch and CUDA RNG states of each rank

A checkpoint is built in ``.tmp-step-…``, every file fsynced, then renamed into place, so a crash or a
second SIGTERM leaves either a whole checkpoint or a temporary directory that the next run deletes.
A directory whose manifest is missing or whose checksums differ is skipped with a warning. With an S3
mirror configured and no usable local checkpoint, the newest mirrored one that verifies is fetched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as D

log = logging.getLogger("llmops_train")
PREFIX, TMP = "step-", ".tmp-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA: only the trainable weights (the frozen base comes from spec.model.base again)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = model.state_dict()
    if len(trainable) < sum(1 for _ in model.parameters()):
        state = {k: v for k, v in state.items() if k in trainable}
    return state


def save(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    d: D.Dist,
    sharded: bool,
    tokenizer_dir: Path | None = None,
) -> Path:
    """Write checkpoint ``step`` collectively; every rank calls this. Returns its final path."""
    final, tmp = root / f"{PREFIX}{step:08d}", root / f"{TMP}{PREFIX}{step:08d}"
    if d.main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    D.barrier()
    if sharded:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        msd, osd = get_state_dict(model, optimizer)
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=tmp / "dcp")
    elif d.main:
        torch.save(_model_state(model), tmp / "model.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(rng_state(), tmp / f"rng-rank{d.rank}.pt")
    if d.main:
        torch.save(trainer, tmp / "trainer.pt")
        if tokenizer_dir is not None:  # a preset's trained BPE travels with the weights (and to S3)
            shutil.copytree(tokenizer_dir, tmp / "tokenizer")
    D.barrier()
    if d.main:
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for p in files:
            _fsync(p)
        manifest = {
            "step": step,
            "format": "dcp" if sharded else "torch",
            "world_size": d.world,
            "files": {p.relative_to(tmp).as_posix(): _sha256(p) for p in files},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        _fsync(tmp / "manifest.json")
        _fsync(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)
    D.barrier()
    return final


def verify(path: Path) -> str | None:
    """Why ``path`` is not a usable checkpoint, or None when every checksum matches."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no readable manifest.json (partial write?)"
    for rel, digest in manifest["files"].items():
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        if _sha256(f) != digest:
            return f"{rel} checksum mismatch"
    return None


def checkpoints(root: Path) -> list[Path]:
    """Complete-looking checkpoint directories, newest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob(f"{PREFIX}*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def find_latest(root: Path) -> Path | None:
    """The newest checkpoint that verifies; broken ones are skipped with a warning. Rank 0 decides."""
    for path in checkpoints(root):
        problem = verify(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, d: D.Dist) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the trainer state."""
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest["format"] == "dcp":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=path / "dcp")
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        model.load_state_dict(torch.load(path / "model.pt", map_location=d.device), strict=False)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=d.device))
    rng = path / f"rng-rank{d.rank}.pt"
    if not rng.exists():  # the world size changed: the data order still holds, RNG streams cannot
        log.warning("%s has no RNG state for rank %d; using rank 0's", path, d.rank)
        rng = path / "rng-rank0.pt"
    set_rng_state(torch.load(rng, weights_only=False))
    return torch.load(path / "trainer.pt", weights_only=False)


def prune(root: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints; drop leftovers of interrupted writes and manifest-less dirs."""
    for stale in root.glob(f"{TMP}*"):
        shutil.rmtree(stale, ignore_errors=True)
    complete = []
    for path in checkpoints(root):
        if (path / "manifest.json").is_file():
            complete.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    for old in complete[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def fetch_from_mirror(root: Path, s3_prefix: str) -> Path | None:
    """The newest mirrored checkpoint that verifies, downloaded into ``root``; for when the volume holds
    none (scratch storage, a new claim). Called by rank 0 only when no local checkpoint is usable."""
    import boto3

    from llmops_core import storage

    base = s3_prefix.rstrip("/")
    loc = storage.parse(base)
    client = boto3.client("s3")
    prefix = f"{loc.key}/{PREFIX}" if loc.key else PREFIX
    names = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=loc.bucket, Prefix=prefix, Delimiter="/"
    ):
        names.update(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1] for cp in page.get("CommonPrefixes", []))
    for name in sorted(names, reverse=True):
        tmp = root / f"{TMP}{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            storage.download_prefix(storage.parse(f"{base}/{name}"), tmp, client=client)
            problem = verify(tmp)
        except Exception as e:
            problem = f"download failed: {e}"
        if problem is None:
            os.replace(tmp, root / name)
            log.info("fetched checkpoint %s from %s", name, base)
            return root / name
        log.warning("skipping mirrored checkpoint %s/%s: %s", base, name, problem)
        shutil.rmtree(tmp, ignore_errors=True)
    return None


def mirror(path: Path, s3_prefix: str) -> None:
    """Copy a finished checkpoint to S3 with verified uploads; a failure warns, training goes on."""
    from llmops_core.storage import upload_dir

    try:
        n = upload_dir(path, f"{s3_prefix.rstrip('/')}/{path.name}")
        log.info("mirrored %s to %s (%d files)", path.name, s3_prefix, n)
    except Exception as e:
        log.warning("S3 mirror of %s failed: %s", path.name, e)
