"""Bad input fails fast, before any heavy work, with one line naming the cause and exit code 2."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from llmops_train.__main__ import main
from tests.train.helpers import CORPUS, write_job


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run main() in-process, then undo what a run sets process-wide (other suites share the process)."""
    monkeypatch.setenv("LLMOPS_PVC_ROOT", str(tmp_path / "pvc"))
    monkeypatch.setenv("LLMOPS_CHECKPOINT_DIR", str(tmp_path / "ckpt"))
    for var in ("WORLD_SIZE", "RANK", "LLMOPS_PROGRESS_CONFIGMAP"):
        monkeypatch.delenv(var, raising=False)
    handler, deterministic = signal.getsignal(signal.SIGTERM), torch.are_deterministic_algorithms_enabled()
    yield
    signal.signal(signal.SIGTERM, handler)
    torch.use_deterministic_algorithms(deterministic)


def _error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("llmops-train: error:")]
    assert len(lines) == 1
    return lines[0]


def test_missing_data_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml", data={"train": str(tmp_path / "nope.txt")})
    assert _error(capsys, ["--job", str(job)]).endswith(f"data {tmp_path / 'nope.txt'} not found")


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_empty_data(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    target = tmp_path / "empty"
    if kind == "file":
        target.write_text("")
    else:
        target.mkdir()
    job = write_job(tmp_path / "job.yaml", data={"train": str(target)})
    assert _error(capsys, ["--job", str(job)]).endswith(f"training data {target} is empty")


def test_model_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml", model={"base": str(tmp_path / "no-model")})
    assert "no config.json" in _error(capsys, ["--job", str(job)])


def test_sequence_longer_than_the_model_allows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 32}))
    job = write_job(tmp_path / "job.yaml", model={"base": str(base)})
    assert "sequenceLength 64 exceeds the model's max_position_embeddings 32" in _error(
        capsys, ["--job", str(job)]
    )


def test_sequence_longer_than_a_preset_allows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml", hyperparameters={"sequenceLength": 4096})
    assert "exceeds preset tiny's 512 positions" in _error(capsys, ["--job", str(job)])


def test_gpu_asked_for_but_absent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml")
    assert "CUDA GPU was requested" in _error(capsys, ["--job", str(job), "--device", "cuda"])
    job = write_job(tmp_path / "job.yaml", resources={"accelerator": "nvidia-gpu"})
    assert "CUDA GPU was requested" in _error(capsys, ["--job", str(job)])


def test_invalid_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml", hyperparameters={"batchSize": 0})
    assert "spec.hyperparameters.batchSize" in _error(capsys, ["--job", str(job)])
    assert "not found" in _error(capsys, ["--job", str(tmp_path / "missing.yaml")])


def test_bad_jsonl_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n{"body": "no text field"}\n')
    job = write_job(tmp_path / "job.yaml", data={"train": str(data), "format": "jsonl"})
    assert f"{data}:2: not a JSON object with a 'text' string" in _error(capsys, ["--job", str(job)])


def test_too_little_data_for_one_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "small.txt"
    data.write_text(CORPUS.read_text()[:3000])
    job = write_job(tmp_path / "job.yaml", data={"train": str(data)}, hyperparameters={"batchSize": 64})
    assert "fewer than one global batch" in _error(capsys, ["--job", str(job)])


def test_non_finite_loss_skips_steps_then_aborts_keeping_the_last_good_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops_train import loop

    make_model, calls = loop.make_model, [0]

    def poisoned(*args: object):
        """From the 8th forward pass on, the loss is NaN (a diverged run)."""
        model = make_model(*args)

        def hook(module: object, inputs: object, out):
            calls[0] += 1
            if calls[0] > 7:
                out.loss = out.loss * float("nan")
            return out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(loop, "make_model", poisoned)
    job = write_job(
        tmp_path / "job.yaml",
        hyperparameters={"maxSteps": 50, "evalInterval": 1000},
        checkpoint={"interval": 5, "keep": 3},
    )
    line = _error(capsys, ["--job", str(job), "--device", "cpu"], code=1)
    assert "loss was not finite for 5 steps in a row" in line
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("step-*")) == ["step-00000005"]
    bad = [r for r in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines() if '"step": 8,' in r]
    assert bad, "skipped steps are still reported"


@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--output"])
def test_an_unwritable_folder_is_reported_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    job = write_job(tmp_path / "job.yaml")
    line = _error(capsys, ["--job", str(job), flag, "/proc/llmops-test"])
    assert "/proc/llmops-test" in line and "not writable" in line
    assert not (tmp_path / "ckpt" / "metrics.jsonl").exists(), "no step was trained"


def test_non_utf8_data_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "latin1.txt"
    data.write_bytes(CORPUS.read_bytes()[:5000] + "\n\ncaf\xe9\n".encode("latin-1"))
    job = write_job(tmp_path / "job.yaml", data={"train": str(data)})
    line = _error(capsys, ["--job", str(job)])
    assert f"{data}:" in line and "not UTF-8" in line


def test_a_nan_learning_rate_says_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "job.yaml", hyperparameters={"learningRate": float("nan")})
    line = _error(capsys, ["--job", str(job)])
    assert "spec.hyperparameters.learningRate" in line and "nan" in line.lower()
    assert "less than or equal" not in line


def test_a_missing_validation_file_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "val.txt"
    job = write_job(tmp_path / "job.yaml", data={"train": str(CORPUS), "validation": str(missing)})
    assert _error(capsys, ["--job", str(job)]).endswith(f"validation data {missing} not found")


def test_a_non_string_text_field_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n{"text": 42}\n')
    job = write_job(tmp_path / "job.yaml", data={"train": str(data), "format": "jsonl"})
    assert f"{data}:2: 'text' is int 42, not a string" in _error(capsys, ["--job", str(job)])


def test_a_tokenizer_from_a_failed_small_run_is_not_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.txt"
    small.write_text(CORPUS.read_text()[:3000])
    job = write_job(tmp_path / "job.yaml", data={"train": str(small)}, hyperparameters={"batchSize": 64})
    assert "fewer than one global batch" in _error(capsys, ["--job", str(job)])
    job = write_job(tmp_path / "job.yaml", hyperparameters={"maxSteps": 2, "evalInterval": 1000})
    assert main(["--job", str(job), "--device", "cpu"]) == 0
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(tmp_path / "pvc" / "out" / "model")) == 1024


def test_trainium_without_a_neuron_image_is_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(tmp_path / "job.yaml", resources={"accelerator": "aws-trainium"})
    line = _error(capsys, ["--job", str(job)])
    assert "spec.image: aws-trainium needs a Neuron-capable trainer image" in line


@pytest.mark.parametrize("how", ["accelerator", "flag"])
def test_the_bundled_trainer_refuses_neuron_and_xla_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    if how == "accelerator":
        job = write_job(
            tmp_path / "job.yaml", image="my-neuron-trainer:1", resources={"accelerator": "aws-trainium"}
        )
        argv = ["--job", str(job)]
    else:
        argv = ["--job", str(write_job(tmp_path / "job.yaml")), "--device", "xla"]
    line = _error(capsys, argv)
    assert "runs on CPUs and NVIDIA GPUs only" in line and "Neuron" in line
    assert "CUDA GPU was requested" not in line
