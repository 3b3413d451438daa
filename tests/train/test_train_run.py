"""End to end on CPU: a tiny preset learns the shipped corpus and its export loads and generates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.train.helpers import losses, metrics, train, write_job


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    job = write_job(tmp / "job.yaml", hyperparameters={"maxSteps": 40})
    result = train(tmp, job)
    assert result.returncode == 0, result.stderr
    return tmp


def test_loss_falls_clearly(trained: Path) -> None:
    by_step = losses(trained / "ckpt" / "metrics.jsonl")
    assert sorted(by_step) == list(range(1, 41))
    first, last = sum(by_step[s] for s in (1, 2, 3)) / 3, sum(by_step[s] for s in (38, 39, 40)) / 3
    assert last < first - 2.0, (first, last)  # ln(1024) ~ 6.9 at the start


def test_metrics_lines_have_the_documented_fields(trained: Path) -> None:
    records = metrics(trained / "ckpt" / "metrics.jsonl")
    step = next(r for r in records if r.get("step") == 10 and "loss" in r)
    assert {"time", "loss", "lr", "grad_norm", "tokens_per_second", "epoch", "eta", "eval_loss"} <= set(step)
    events = {r.get("event") for r in records}
    assert {"checkpoint", "exported"} <= events


def test_keeps_the_last_k_checkpoints_and_the_tokenizer(trained: Path) -> None:
    names = sorted(p.name for p in (trained / "ckpt").iterdir())
    assert names == ["metrics.jsonl", "step-00000035", "step-00000040", "tokenizer"]
    manifest = json.loads((trained / "ckpt" / "step-00000040" / "manifest.json").read_text())
    assert manifest["step"] == 40 and manifest["format"] == "torch"
    assert {"model.pt", "optimizer.pt", "trainer.json", "rng-rank0.pt", "tokenizer/tokenizer.json"} <= set(
        manifest["files"]
    )


def test_export_loads_with_transformers_and_generates(trained: Path) -> None:
    out = trained / "pvc" / "out" / "model"
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("The Fox and the", return_tensors="pt").input_ids
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert gen.shape[1] == ids.shape[1] + 8
    assert tok.decode(gen[0], skip_special_tokens=True).startswith("The Fox and the")
    # The tokenizer shipped with the model is the one trained for it (same ids as in the checkpoint dir).
    ref = AutoTokenizer.from_pretrained(trained / "ckpt" / "tokenizer")
    assert ref("The Fox").input_ids == tok("The Fox").input_ids


def test_a_finished_run_restarted_only_re_exports(trained: Path) -> None:
    job = trained / "job.yaml"
    result = train(trained, job)
    assert result.returncode == 0, result.stderr
    assert "resumed from" in result.stderr and "step-00000040" in result.stderr
    assert max(losses(trained / "ckpt" / "metrics.jsonl")) == 40


def test_export_names_a_tokenizer_class_every_supported_transformers_has(trained: Path) -> None:
    out = trained / "pvc" / "out" / "model"
    assert (
        json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"]
        == "PreTrainedTokenizerFast"
    )
    assert json.loads((out / "config.json").read_text())["use_cache"] is True, "generation wants the KV cache"


OLD_TRANSFORMERS = os.environ.get("LLMOPS_TEST_OLD_TRANSFORMERS")
LOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, __version__
tok = AutoTokenizer.from_pretrained(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
ids = tok("The Fox and the", return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits[0, -1]
print(json.dumps({"version": __version__, "class": type(tok).__name__, "ids": ids[0].tolist(),
                  "logits": logits[:8].tolist()}))
"""


@pytest.mark.skipif(
    not OLD_TRANSFORMERS,
    reason="set LLMOPS_TEST_OLD_TRANSFORMERS to a directory holding the oldest transformers we allow "
    "(`make setup` makes .venv/transformers-4; `make test` and CI set it)",
)
def test_export_loads_in_transformers_4_as_in_the_newest(trained: Path) -> None:
    out = trained / "pvc" / "out" / "model"

    def load(pythonpath: str | None) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"TRANSFORMERS_VERBOSITY": "error"}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        done = subprocess.run(
            [sys.executable, "-c", LOAD, str(out)], env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    old, new = load(OLD_TRANSFORMERS), load(None)
    assert old["version"].startswith("4.") and not new["version"].startswith("4.")
    assert old["ids"] == new["ids"]
    assert old["logits"] == pytest.approx(new["logits"], abs=1e-5)
