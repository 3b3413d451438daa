"""LoRA fine-tuning of a base model read from S3, data from S3, output and checkpoint mirror to S3 (moto)."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import torch
from moto import mock_aws
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from llmops_train.__main__ import main
from llmops_train.tokenizer import train_bpe
from tests.train.helpers import CORPUS, write_job


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for var, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LLMOPS_CACHE_DIR": str(tmp_path / "cache"),
        "LLMOPS_PVC_ROOT": str(tmp_path / "pvc"),
        "LLMOPS_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }.items():
        monkeypatch.setenv(var, value)
    for var in ("WORLD_SIZE", "RANK", "LLMOPS_PROGRESS_CONFIGMAP", "LLMOPS_METRICS_FILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    handler, deterministic = signal.getsignal(signal.SIGTERM), torch.are_deterministic_algorithms_enabled()
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bkt")
        yield client
    signal.signal(signal.SIGTERM, handler)
    torch.use_deterministic_algorithms(deterministic)


def _upload_base(client, tmp: Path) -> None:
    base = tmp / "base"
    train_bpe([CORPUS.read_text()[:50_000]], 512, base)
    tok = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        vocab_size=len(tok),
        max_position_embeddings=128,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(base)
    for f in base.iterdir():
        client.upload_file(str(f), "bkt", f"models/base/{f.name}")
    client.upload_file(str(CORPUS), "bkt", "data/corpus.txt")


def test_lora_from_s3_to_s3(s3, tmp_path: Path) -> None:
    _upload_base(s3, tmp_path)
    job = write_job(
        tmp_path / "job.yaml",
        model={
            "base": "s3://bkt/models/base",
            "lora": {"rank": 4, "alpha": 8, "targetModules": ["q_proj", "v_proj"]},
        },
        data={"train": "s3://bkt/data/corpus.txt"},
        hyperparameters={"maxSteps": 6, "learningRate": 0.01, "warmupSteps": 1},
        checkpoint={"interval": 3, "keep": 1, "s3": "s3://bkt/ckpt"},
        output={"location": "s3://bkt/out/model"},
    )
    assert main(["--job", str(job), "--device", "cpu"]) == 0

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]}
    assert {
        "out/model/model.safetensors",
        "out/model/config.json",
        "out/model/tokenizer.json",
        "out/model/generation_config.json",
        "out/model/adapter/adapter_config.json",
    } <= keys
    assert {"ckpt/step-00000003/manifest.json", "ckpt/step-00000006/manifest.json"} <= keys
    # A LoRA checkpoint holds the adapters only; the base comes from spec.model.base on resume.
    state = torch.load(tmp_path / "ckpt" / "step-00000006" / "model.pt")
    assert state and all("lora_" in k for k in state)

    out = tmp_path / "exported"
    out.mkdir()
    for key in keys:
        if key.startswith("out/model/") and "/adapter/" not in key:
            s3.download_file("bkt", key, str(out / key.removeprefix("out/model/")))
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    assert not any("lora" in k for k in merged.state_dict())
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q]), "adapters were not merged"
    tok = AutoTokenizer.from_pretrained(out)
    assert merged.generate(tok("The Fox", return_tensors="pt").input_ids, max_new_tokens=4).shape[1] > 2

    # A new pod with an empty checkpoint volume resumes from the newest mirrored checkpoint (LoRA state).
    shutil.rmtree(tmp_path / "ckpt")
    assert main(["--job", str(job), "--device", "cpu", "--max-steps", "8"]) == 0
    resumed = [json.loads(x) for x in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed if "loss" in r] == [7, 8]


def test_preset_resumes_from_the_s3_mirror_with_its_own_tokenizer(s3, tmp_path: Path) -> None:
    job = write_job(
        tmp_path / "job.yaml",
        hyperparameters={"maxSteps": 6},
        checkpoint={"interval": 3, "keep": 1, "s3": "s3://bkt/ckpt"},
    )
    assert main(["--job", str(job), "--device", "cpu"]) == 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]}
    assert "ckpt/step-00000006/tokenizer/tokenizer.json" in keys
    tokenizer = (tmp_path / "ckpt" / "tokenizer" / "tokenizer.json").read_bytes()

    shutil.rmtree(tmp_path / "ckpt")  # a new pod on scratch storage
    assert main(["--job", str(job), "--device", "cpu", "--max-steps", "8"]) == 0
    resumed = [json.loads(x) for x in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed if "loss" in r] == [7, 8]
    exported = json.loads((tmp_path / "pvc" / "out" / "model" / "tokenizer.json").read_text())
    original = json.loads(tokenizer)
    assert exported["model"]["vocab"] == original["model"]["vocab"], "the mirrored tokenizer was used"
    assert exported["model"]["merges"] == original["model"]["merges"]
