"""Data: read text or JSONL, tokenize, pack into fixed-length blocks, and serve them in a resumable order.

The order of an epoch is a permutation drawn from ``(seed, epoch)`` alone, and a global micro-batch is
the next ``batch_size * world_size`` blocks of it, split by rank. So the position (epoch, index) is all
a checkpoint needs to resume exactly, and 2 ranks x B sequences see the same blocks as 1 rank x 2B.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from .config import InputError


def list_files(root: Path, what: str = "training") -> list[Path]:
    """A file, or every non-hidden file below a directory in sorted order (the order must not vary)."""
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(
            p for p in root.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts)
        )
    raise InputError(f"{what} data {root} not found")


def check_nonempty(root: Path, what: str) -> list[Path]:
    """Fail fast (before the model loads) when data is missing or empty."""
    files = list_files(root, what)
    if not files or sum(p.stat().st_size for p in files) == 0:
        raise InputError(f"{what} data {root} is empty")
    return files


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "convert the file to UTF-8"
        ) from None


def read_documents(files: list[Path], fmt: str, text_field: str) -> list[str]:
    """Documents of every file; a line or file that is not what the format says stops the run, naming
    it (a silently dropped record is data the user believes was trained on)."""
    docs: list[str] = []
    for path in files:
        if fmt == "text":
            docs.extend(d for d in _read_text(path).split("\n\n") if d.strip())
            continue
        for n, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"{path}:{n}: not a JSON object with a {text_field!r} string") from None
            if not isinstance(text, str):
                raise InputError(
                    f"{path}:{n}: {text_field!r} is {type(text).__name__} {text!r:.40}, not a string"
                )
            if text.strip():
                docs.append(text)
    return docs


def digest(files: list[Path]) -> str:
    """sha256 over the contents of ``files`` in order: the data part of a run's fingerprint."""
    h = hashlib.sha256()
    for path in files:
        h.update(path.stat().st_size.to_bytes(8, "little"))
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def pack(docs: list[str], tokenizer: PreTrainedTokenizerBase, seq_len: int) -> torch.Tensor:
    """Concatenate documents separated by EOS and cut the stream into [n, seq_len] blocks (rest dropped)."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        if eos is not None:
            ids.append(eos)
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)


def split(blocks: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out a seeded random ``fraction`` of blocks for evaluation."""
    n_val = int(len(blocks) * fraction)
    perm = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed))
    return blocks[perm[n_val:]], blocks[perm[:n_val]]


@dataclass
class Position:
    epoch: int = 0
    index: int = 0  # blocks of this epoch's order already consumed (all ranks together)


class BlockLoader:
    """Yields this rank's micro-batches; ``position`` is the resumable state."""

    def __init__(self, blocks: torch.Tensor, batch_size: int, rank: int, world: int, seed: int):
        self.blocks, self.batch_size, self.rank, self.world, self.seed = blocks, batch_size, rank, world, seed
        self.global_batch = batch_size * world
        self.per_epoch = len(blocks) // self.global_batch  # micro-batches; the ragged tail is dropped
        if self.per_epoch == 0:
            raise InputError(
                f"data packs into {len(blocks)} blocks, fewer than one global batch of {self.global_batch}; "
                "add data or lower batchSize/sequenceLength"
            )
        self.position = Position()
        self._order = self._order_for(0)

    def _order_for(self, epoch: int) -> torch.Tensor:
        return torch.randperm(len(self.blocks), generator=torch.Generator().manual_seed(self.seed + epoch))

    def load_position(self, position: Position) -> None:
        self.position = position
        self._order = self._order_for(position.epoch)

    def next_batch(self) -> torch.Tensor:
        pos = self.position
        if pos.index + self.global_batch > self.per_epoch * self.global_batch:
            pos.epoch, pos.index = pos.epoch + 1, 0
            self._order = self._order_for(pos.epoch)
        start = pos.index + self.rank * self.batch_size
        pos.index += self.global_batch
        return self.blocks[self._order[start : start + self.batch_size]]

    @property
    def epochs_done(self) -> float:
        return self.position.epoch + self.position.index / (self.per_epoch * self.global_batch)


@dataclass(frozen=True)
class EvalBatch:
    blocks: torch.Tensor
    weight: int  # real sequences in it; 0 for a filler that keeps collectives in step


def eval_batches(blocks: torch.Tensor, batch_size: int, rank: int, world: int, limit: int) -> list[EvalBatch]:
    """This rank's share of the first ``limit * batch_size`` held-out blocks (all of them if fewer),
    dealt out in global batches of ``batch_size * world``. Every rank gets the same number of batches;
    one whose share ran out gets a zero-weight filler. No randomness: evaluation never shifts an RNG,
    which exact resume relies on."""
    n = min(len(blocks), limit * batch_size)
    out = []
    for g in range(-(-n // (batch_size * world))):  # ceil: the last global batch may be partial
        start = g * batch_size * world + rank * batch_size
        end = min(start + batch_size, n)
        out.append(EvalBatch(blocks[start:end], end - start) if start < n else EvalBatch(blocks[:1], 0))
    return out
