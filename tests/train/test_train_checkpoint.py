"""Checkpoint files in isolation: what verifies, what is pruned, what loads, what is refused."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch

from llmops_train import checkpoint as ckpt
from llmops_train import distributed as D
from llmops_train.config import InputError

ONE = D.Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
PRINT = {"model.preset": "tiny", "hyperparameters.learningRate": 0.003}


class Net(torch.nn.Module):
    def __init__(self, name: str = "fc") -> None:
        super().__init__()
        self.add_module(name, torch.nn.Linear(4, 4))


def _save(root: Path, step: int, model: torch.nn.Module | None = None, **kw) -> Path:
    model = model or Net()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    trainer = {"step": step, "data": {"epoch": 0, "index": 3}, "best_eval": float("inf")}
    return ckpt.save(root, step, model, opt, trainer, ONE, False, fingerprint=kw.pop("fingerprint", PRINT))


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _rehash(path: Path) -> None:
    """What someone who can write the volume can do: make the manifest agree with altered files."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = {
        rel: hashlib.sha256((path / rel).read_bytes()).hexdigest() for rel in manifest["files"]
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_prune_never_counts_a_corrupt_checkpoint_as_one_to_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _save(tmp_path, 30)
    _corrupt(old / "model.pt")
    monkeypatch.setattr(ckpt, "_VERIFIED", {})  # a restarted process: it has verified nothing yet
    new = _save(tmp_path, 7)
    ckpt.prune(tmp_path, keep=1)
    assert new.is_dir(), "the only good checkpoint was deleted"
    assert not old.exists(), "a corrupt checkpoint is removed, not kept"
    assert ckpt.find_latest(tmp_path) == new


def test_prune_keeps_the_newest_valid_ones(tmp_path: Path) -> None:
    paths = [_save(tmp_path, s) for s in (5, 10, 15)]
    (tmp_path / ".tmp-step-00000020").mkdir()
    ckpt.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths[1:]]


@pytest.mark.parametrize(
    "manifest",
    ["{}", "[]", '{"step": 10, "format": "torch", "world_size": 1, "files": {}}', '{"files": 3}'],
)
def test_a_malformed_manifest_is_skipped_not_a_crash(
    tmp_path: Path, manifest: str, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = _save(tmp_path, 5), _save(tmp_path, 10)
    (bad / "manifest.json").write_text(manifest)
    with caplog.at_level(logging.WARNING, "llmops_train"):
        assert ckpt.find_latest(tmp_path) == good
    assert f"skipping checkpoint {bad}" in caplog.text
    assert ckpt.verify(bad) is not None


def test_a_manifest_cannot_point_outside_its_checkpoint(tmp_path: Path) -> None:
    path = _save(tmp_path, 5)
    manifest = json.loads((path / "manifest.json").read_text())
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    manifest["files"]["../outside.txt"] = hashlib.sha256(b"x").hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert "outside the checkpoint" in ckpt.verify(path)


def test_a_renamed_weight_is_refused_naming_the_keys(tmp_path: Path) -> None:
    path = _save(tmp_path, 5, Net("fc"))
    other = Net("proj")
    opt = torch.optim.AdamW(other.parameters(), lr=0.1)
    with pytest.raises(
        ckpt.CheckpointMismatch, match=r"missing proj\.bias, proj\.weight; unexpected fc\.bias, fc\.weight"
    ):
        ckpt.load(path, other, opt, ONE)


class Adapted(torch.nn.Module):
    """A frozen base plus trainable adapter weights, as peft leaves a model."""

    def __init__(self) -> None:
        super().__init__()
        self.base = torch.nn.Linear(4, 4)
        self.base.requires_grad_(False)
        self.lora_a = torch.nn.Linear(4, 2, bias=False)


def test_an_adapter_checkpoint_may_lack_only_frozen_weights(tmp_path: Path) -> None:
    model = Adapted()
    path = _save(tmp_path, 5, model)
    saved = torch.load(path / "model.pt", weights_only=True)
    assert set(saved) == {"lora_a.weight"}, "only the trainable weights are saved"
    fresh = Adapted()
    ckpt.load(path, fresh, torch.optim.AdamW([fresh.lora_a.weight], lr=0.1), ONE)
    assert torch.equal(fresh.lora_a.weight, model.lora_a.weight)

    torch.save({}, path / "model.pt")  # an adapter checkpoint without the adapter
    _rehash(path)
    with pytest.raises(ckpt.CheckpointMismatch, match=r"missing lora_a\.weight"):
        ckpt.load(path, Adapted(), torch.optim.AdamW([fresh.lora_a.weight], lr=0.1), ONE)


class _Payload:
    """Unpickling this runs code (it would be ``os.system`` in an attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("victim", ["rng-rank0.pt", "model.pt", "optimizer.pt"])
def test_no_file_of_a_checkpoint_can_run_code(tmp_path: Path, victim: str) -> None:
    path = _save(tmp_path / "ckpt", 5)
    marker = tmp_path / "marker"
    torch.save({"state": _Payload(marker)}, path / victim)
    _rehash(path)
    model = Net()
    with pytest.raises(ckpt.CheckpointMismatch, match=victim):
        ckpt.load(path, model, torch.optim.AdamW(model.parameters(), lr=0.1), ONE)
    assert not marker.exists(), f"loading {victim} ran code"


def test_trainer_state_is_plain_json(tmp_path: Path) -> None:
    path = _save(tmp_path, 5)
    state = json.loads((path / "trainer.json").read_text())
    assert state["data"] == {"epoch": 0, "index": 3} and state["best_eval"] == float("inf")
    assert not list(path.glob("*.pkl")) and not (path / "trainer.pt").exists()
    model = Net()
    assert ckpt.load(path, model, torch.optim.AdamW(model.parameters(), lr=0.1), ONE) == state


def test_dcp_metadata_is_unpickled_with_a_class_allow_list(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    meta = tmp_path / ".metadata"
    meta.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        ckpt.safe_reader(tmp_path).read_metadata()
    assert not marker.exists()


def test_another_runs_checkpoint_is_refused_saying_what_differs(tmp_path: Path) -> None:
    path = _save(tmp_path, 5)
    changed = PRINT | {"hyperparameters.learningRate": 0.001, "data.sha256": "abc"}
    with pytest.raises(ckpt.CheckpointMismatch) as e:
        ckpt.check_fingerprint(path, changed)
    msg = str(e.value)
    assert isinstance(e.value, InputError)
    assert "hyperparameters.learningRate 0.003 -> 0.001" in msg and "data.sha256" in msg
    assert str(path) in msg and "\n" not in msg
    ckpt.check_fingerprint(path, dict(PRINT))  # the same run: no complaint


def test_a_checkpoint_without_a_fingerprint_is_not_resumed(tmp_path: Path) -> None:
    path = _save(tmp_path, 5)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["fingerprint"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert "fingerprint" in ckpt.verify(path)


def test_real_dcp_metadata_passes_the_allow_list(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp

    model = torch.nn.Linear(3, 3, dtype=torch.bfloat16)
    dcp.save({"model": model.state_dict()}, checkpoint_id=tmp_path)
    metadata = ckpt.safe_reader(tmp_path).read_metadata()
    assert {"model.weight", "model.bias"} <= set(metadata.state_dict_metadata)
