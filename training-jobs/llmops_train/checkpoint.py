"""Fault-tolerant checkpoints: atomic, checksummed, fingerprinted, last K valid kept, newest valid found on start.

Layout under the checkpoint directory::

    tokenizer/                 a preset's tokenizer as trained at the start of the run (scratch: the
                               trusted copy is the one inside each checkpoint)
    step-00000500/             one complete checkpoint
        manifest.json          written last: step, format, world size, run fingerprint, sha256 of every file
        model.pt optimizer.pt  full state dicts (single process / DDP; LoRA: trainable weights only)
        dcp/                   torch.distributed.checkpoint shards instead, for FSDP
        trainer.json           step, scheduler, grad scaler, data position, early-stopping state
        tokenizer/             a preset's tokenizer, so a checkpoint fetched from S3 is self-contained
        rng-rank0.pt ...       python, numpy, torch and CUDA RNG states of each rank (tensors and numbers)

A checkpoint is built in ``.tmp-step-…``, every file fsynced, then renamed into place, so a crash or a
second SIGTERM leaves either a whole checkpoint or a temporary directory that the next run deletes.
A directory whose manifest is missing, malformed or whose checksums differ is skipped with a warning.
Nothing is unpickled: tensors load with ``weights_only=True``, trainer state is JSON and DCP metadata
goes through a class allow-list, because the manifest's hashes come from the same volume as the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import distributed as D
from .config import InputError

log = logging.getLogger("llmops_train")
PREFIX, TMP = "step-", ".tmp-"


class CheckpointMismatch(InputError):
    """The checkpoint directory holds state this run must not continue (another run, another model)."""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: int = Field(ge=0)
    format: Literal["torch", "dcp"]
    world_size: int = Field(ge=1)
    fingerprint: dict[str, Any]
    files: dict[str, str] = Field(min_length=1)


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
    """This process's RNG streams as tensors, numbers and strings only (loadable with weights_only)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable(model: torch.nn.Module) -> set[str] | None:
    """Names of the trainable weights when some are frozen (LoRA), else None (every weight counts)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return names if len(names) < sum(1 for _ in model.parameters()) else None


def _model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA: only the trainable weights (the frozen base comes from spec.model.base again)."""
    state, trainable = model.state_dict(), _trainable(model)
    return state if trainable is None else {k: v for k, v in state.items() if k in trainable}


def save(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: dict[str, Any],
    d: D.Dist,
    sharded: bool,
    *,
    fingerprint: dict[str, Any],
    tokenizer: Any = None,
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
        (tmp / "trainer.json").write_text(json.dumps(trainer))
        if tokenizer is not None:  # a preset's trained BPE travels with the weights (and to S3)
            tokenizer.save_pretrained(tmp / "tokenizer")
    D.barrier()
    if d.main:
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for p in files:
            _fsync(p)
        manifest = Manifest(
            step=step,
            format="dcp" if sharded else "torch",
            world_size=d.world,
            fingerprint=fingerprint,
            files={p.relative_to(tmp).as_posix(): _sha256(p) for p in files},
        )
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=1))
        _fsync(tmp / "manifest.json")
        _fsync(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)
        _VERIFIED[final] = _stamp(final)
    D.barrier()
    return final


def read_manifest(path: Path) -> Manifest:
    """The parsed manifest; ValueError or OSError when it is missing or not one."""
    return Manifest.model_validate_json((path / "manifest.json").read_bytes())


def verify(path: Path) -> str | None:
    """Why ``path`` is not a usable checkpoint, or None when it is whole and every checksum matches."""
    try:
        manifest = read_manifest(path)
    except OSError:
        return "no readable manifest.json (partial write?)"
    except ValidationError as e:
        fields = sorted({".".join(map(str, err["loc"])) or "(document)" for err in e.errors()})
        return f"malformed manifest.json ({', '.join(fields)}; written by another version?)"
    if path.name.removeprefix(TMP) != f"{PREFIX}{manifest.step:08d}":  # a mirror download is checked as .tmp-
        return f"manifest.json says step {manifest.step}"
    need = {"trainer.json", "rng-rank0.pt"} | (
        {"model.pt", "optimizer.pt"} if manifest.format == "torch" else set()
    )
    if missing := sorted(need - set(manifest.files)):
        return f"manifest.json does not list {', '.join(missing)}"
    for rel, digest in manifest.files.items():
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts or not parts:
            return f"manifest.json names {rel!r}, outside the checkpoint"
        f = path / rel
        if not f.is_file():
            return f"{rel} is missing"
        if _sha256(f) != digest:
            return f"{rel} checksum mismatch"
    return None


_VERIFIED: dict[Path, tuple] = {}  # checkpoints known whole, with the (name, mtime, size) of each file


def _stamp(path: Path) -> tuple:
    """Cheap to take, and changed by any write: a rewritten file is hashed again."""
    return tuple(
        (p.relative_to(path).as_posix(), st.st_mtime_ns, st.st_size)
        for p in sorted(path.rglob("*"))
        if p.is_file() and (st := p.stat())
    )


def _is_valid(path: Path) -> bool:
    """``verify`` once per checkpoint per process: pruning must not re-hash every kept checkpoint."""
    try:
        if _VERIFIED.get(path) == _stamp(path):
            return True
    except OSError:
        return False
    problem = verify(path)
    if problem is None:
        _VERIFIED[path] = _stamp(path)
        return True
    log.warning("checkpoint %s is not usable: %s", path, problem)
    return False


def checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories, newest first (not yet verified)."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob(f"{PREFIX}*") if p.is_dir()), key=lambda p: p.name, reverse=True)


def find_latest(root: Path) -> Path | None:
    """The newest checkpoint that verifies; broken ones are skipped with a warning. Rank 0 decides."""
    for path in checkpoints(root):
        problem = verify(path)
        if problem is None:
            _VERIFIED[path] = _stamp(path)
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def check_fingerprint(path: Path, fingerprint: dict[str, Any]) -> None:
    """Refuse to continue a checkpoint written for another run config, naming every difference."""
    saved = read_manifest(path).fingerprint
    diffs = [
        f"{key} {saved.get(key, '(unset)')} -> {fingerprint.get(key, '(unset)')}"
        if not key.endswith("sha256")
        else f"{key} differs (other content)"
        for key in sorted(saved.keys() | fingerprint.keys())
        if saved.get(key) != fingerprint.get(key)
    ]
    if diffs:
        raise CheckpointMismatch(
            f"checkpoint {path} belongs to a different run ({'; '.join(diffs)}); "
            "use another checkpoint directory for a new run, or delete this one to start over"
        )


def _load_data(path: Path, what: str) -> Any:
    """Tensors and plain containers only: anything else in the file is refused, never executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointMismatch(
            f"{path.parent}: {what} {path.name} holds more than data ({first})"
        ) from None


def _load_model(path: Path, model: torch.nn.Module) -> None:
    """Every weight must match; a LoRA checkpoint may lack only the frozen base weights."""
    state = _load_data(path / "model.pt", "model weights")
    own, trainable = model.state_dict(), _trainable(model)
    required = set(own) if trainable is None else {k for k in own if k in trainable}
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:

        def names(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        parts = ([f"missing {names(missing)}"] if missing else []) + (
            [f"unexpected {names(unexpected)}"] if unexpected else []
        )
        raise CheckpointMismatch(f"checkpoint {path} does not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=trainable is None)


class SafeUnpickler(pickle.Unpickler):
    """DCP's ``.metadata`` is a pickle: allow only DCP's own classes and torch's dtype-like constants."""

    ALLOWED = {
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("torch.serialization", "_get_layout"),  # how torch.layout pickles: a name -> layout lookup
        ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
        ("pathlib", "PurePosixPath"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        if "." not in name and module.startswith("torch.distributed.checkpoint"):
            obj = super().find_class(module, name)
            if isinstance(obj, type) and obj.__module__ == module:
                return obj
        if module == "torch" and "." not in name:
            obj = getattr(torch, name, None)
            if obj is torch.Size or isinstance(obj, torch.dtype | torch.layout | torch.memory_format):
                return obj
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in checkpoint metadata")


def _safe_reader_class() -> type:
    from torch.distributed.checkpoint import FileSystemReader

    class Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            path = Path(self.path) / ".metadata"
            metadata = SafeUnpickler(io.BytesIO(path.read_bytes())).load()
            if getattr(metadata, "storage_meta", None) is None:
                from torch.distributed.checkpoint.metadata import StorageMeta

                metadata.storage_meta = StorageMeta(checkpoint_id=self.path, load_id=self.load_id)
            return metadata

    return Reader


def safe_reader(path: Path) -> Any:
    """A DCP ``FileSystemReader`` whose metadata goes through ``SafeUnpickler``."""
    return _safe_reader_class()(path)


def _safe_planner() -> Any:
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class Planner(DefaultLoadPlanner):
        """Non-tensor items load with ``weights_only=True`` (the default planner unpickles them)."""

        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            data = torch.load(value, weights_only=True)
            if self.flatten_state_dict:
                from torch.distributed.checkpoint._traverse import set_element

                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], data)
            else:
                self.state_dict[read_item.dest_index.fqn] = data

    return Planner()


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, d: D.Dist) -> dict[str, Any]:
    """Restore model, optimizer and this rank's RNG; return the trainer state."""
    manifest = read_manifest(path)
    if manifest.format == "dcp":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        msd, osd = get_state_dict(model, optimizer)
        state = {"model": msd, "optim": osd}
        try:
            dcp.load(state, storage_reader=safe_reader(path / "dcp"), planner=_safe_planner())
        except Exception as e:
            raise CheckpointMismatch(
                f"checkpoint {path} does not fit the model: {e}".replace("\n", " ")
            ) from None
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        _load_model(path, model)
        try:
            optimizer.load_state_dict(_load_data(path / "optimizer.pt", "optimizer state"))
        except (ValueError, KeyError) as e:
            raise CheckpointMismatch(f"checkpoint {path}: optimizer state does not fit: {e}") from None
    rng = path / f"rng-rank{d.rank}.pt"
    if not rng.exists():  # the world size changed: the data order still holds, RNG streams cannot
        log.warning("%s has no RNG state for rank %d; using rank 0's", path, d.rank)
        rng = path / "rng-rank0.pt"
    set_rng_state(_load_data(rng, "RNG state"))
    return json.loads((path / "trainer.json").read_text())


def prune(root: Path, keep: int) -> None:
    """Keep the ``keep`` newest checkpoints that verify; drop broken ones and leftovers of interrupted
    writes. A corrupt checkpoint never counts as one to keep (it would push out the good ones)."""
    for stale in root.glob(f"{TMP}*"):
        shutil.rmtree(stale, ignore_errors=True)
    valid = []
    for path in checkpoints(root):
        if _is_valid(path):
            valid.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
            _VERIFIED.pop(path, None)
    for old in valid[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        _VERIFIED.pop(old, None)


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
