"""`llmops estimate` and the fit check: JSON that matches the library, one-line errors, validate's
warning and --strict-fit, and suggestions that really fit when applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmops.main import cli
from llmops_core.api import load
from llmops_core.estimate import (
    ModelShape,
    TrainingPlan,
    check_fit,
    inference_memory,
    load_model_shape,
    plan_for_endpoint,
    training_memory,
)
from tests.manifests import ROOT, endpoint, training_job

EX = ROOT / "manifests" / "examples"
TOO_BIG = {  # 1B parameters, DDP, 2k tokens x 8 on one 24 GiB A10G: does not fit
    "model": {"preset": "1b"},
    "hyperparameters": {"batchSize": 8, "sequenceLength": 2048, "strategy": "ddp"},
    "resources": {"accelerator": "nvidia-gpu", "acceleratorsPerNode": 1, "instanceTypes": ["g5.2xlarge"]},
    "output": {"location": "s3://bucket/out/"},
    "data": {"train": "s3://bucket/data/"},
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def write(tmp_path: Path, doc: dict, name: str = "r.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_estimate_preset_json_is_the_library_estimate():
    result = run(
        "estimate", "350m", "--batch-size", "4", "--seq-len", "1024", "--checkpointing", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    plan = TrainingPlan(batch_size=4, sequence_length=1024, activation_checkpointing=True)
    assert report["memory_per_device"]["peak"] == training_memory(ModelShape.from_preset("350m"), plan).peak
    assert report["prices"]["as_of"] and report["options"]
    for option in report["options"]:  # every option listed really fits its device
        assert option["needed_bytes"] <= (option["device_memory_gib"] - 2) * 1024**3


def test_estimate_job_file_uses_its_settings_and_prices_the_run():
    report = json.loads(run("estimate", str(EX / "p5-efa-training.yaml"), "-o", "json").output)
    job = load(yaml.safe_load((EX / "p5-efa-training.yaml").read_text()))
    hp = job.spec.hyperparameters
    assert report["plan"]["world_size"] == 16 and report["plan"]["strategy"] == hp.strategy
    assert (
        report["run_tokens"]
        == hp.max_steps * hp.batch_size * hp.sequence_length * hp.gradient_accumulation * 16
    )
    p5 = next(o for o in report["options"] if o["instance_type"].startswith("p5."))
    assert p5["usd_per_run"] == pytest.approx(p5["hours"] * p5["usd_per_hour"], abs=0.01)
    assert report["fit"] is None


def test_estimate_endpoint_with_model_override_and_int8(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "hidden_size": 4096,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 8,
                "intermediate_size": 14336,
                "vocab_size": 128256,
            }
        )
    )
    ep = write(
        tmp_path,
        endpoint(model={"location": "s3://m/llama/"}, server={"maxBatchSize": 8, "maxModelLen": 4096}),
    )
    plain = json.loads(run("estimate", ep, "--model", str(config), "-o", "json").output)
    int8 = json.loads(
        run("estimate", ep, "--model", str(config), "--quantization", "int8", "-o", "json").output
    )
    shape = load_model_shape(str(config))
    assert plain["memory_per_device"]["kv_cache"] == 2 * 32 * 8 * 4096 * 1024 * 4  # fp32 on CPU
    assert (
        plain["memory_per_device"]["peak"]
        == inference_memory(shape, plan_for_endpoint(load(yaml.safe_load(Path(ep).read_text())), shape)).peak
    )
    assert int8["memory_per_device"]["weights"] < plain["memory_per_device"]["weights"] / 3


def test_context_parallel_option_splits_activations_and_shares_sequences():
    common = ["1b", "--seq-len", "32768", "--batch-size", "1", "--devices", "8", "--steps", "10"]
    one = json.loads(run("estimate", *common, "-o", "json").output)
    four = json.loads(run("estimate", *common, "--context-parallel", "4", "-o", "json").output)
    plan = TrainingPlan(batch_size=1, sequence_length=32768, world_size=8, context_parallel=4)
    mem = training_memory(ModelShape.from_preset("1b"), plan)
    assert four["plan"]["context_parallel"] == 4
    assert four["memory_per_device"]["peak"] == mem.peak
    assert four["memory_per_device"]["context_parallel_exchange"] == mem.cp_exchange > 0
    assert four["memory_per_device"]["activations"] < one["memory_per_device"]["activations"] / 3
    assert four["run_tokens"] * 4 == one["run_tokens"] == 10 * 32768 * 8
    small = [
        "1b",
        "--seq-len",
        "4096",
        "--strategy",
        "fsdp",
        "--devices",
        "4",
        "--context-parallel",
        "4",
        "-o",
        "json",
    ]
    gpus = [o for o in json.loads(run("estimate", *small).output)["options"] if o["instance_type"][0] in "gp"]
    assert gpus
    for option in gpus:  # only GPU counts that hold whole context-parallel groups of 4
        assert option["count"] * option["devices"] % 4 == 0, option


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nonesuch"], "'nonesuch' is not a preset"),
        (["7B", "--batch-size", "0"], "--batch-size"),
        (["missing.yaml"], "missing.yaml"),
        (["bad.json"], "not valid JSON"),
        (["nokeys.json"], "missing integer field(s) hidden_size"),
        (["remote.yaml"], "say which with --model"),
        (["invalid.yaml"], "spec.hyperparameters.batchSize"),
        (["500"], "too small to infer a shape"),
        (["1b", "--devices", "4", "--context-parallel", "3"], "--context-parallel 3 needs a world size (4)"),
        (["1b", "--seq-len", "100", "--context-parallel", "4", "--devices", "4"], "divisible by 8"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "nokeys.json").write_text("{}")
    write(tmp_path, training_job(model={"base": "s3://models/llama/"}), "remote.yaml")
    write(tmp_path, training_job(hyperparameters={"batchSize": -1}), "invalid.yaml")
    result = run("estimate", *args)
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert needle in err.splitlines()[-1] and "Traceback" not in err, err


def test_fit_check_names_the_numbers_and_suggestions_that_fit():
    job = load(training_job(**TOO_BIG))
    finding = check_fit(job)
    assert finding is not None and finding.instance_type == "g5.2xlarge"
    assert finding.needed_bytes > finding.available_bytes == 22 * 1024**3
    assert finding.suggestions[0].startswith("activationCheckpointing: true, strategy: fsdp, nodes: ")
    assert finding.suggestions[1].startswith(
        "activationCheckpointing: true, batchSize: 4 (gradientAccumulation x2)"
    )
    hp = {**TOO_BIG["hyperparameters"], "activationCheckpointing": True}
    # Applying a suggestion makes the same check pass; one node fewer does not.
    nodes = int(finding.suggestions[0].split("nodes: ")[1].split()[0])
    for n, fits in ((nodes, True), (nodes - 1, False)):
        job = training_job(
            **{
                **TOO_BIG,
                "hyperparameters": {**hp, "strategy": "fsdp"},
                "resources": {**TOO_BIG["resources"], "nodes": n},
            }
        )
        assert (check_fit(load(job)) is None) == fits
    smaller = training_job(
        **{**TOO_BIG, "hyperparameters": {**hp, "batchSize": 4, "gradientAccumulation": 2}}
    )
    assert check_fit(load(smaller)) is None
    bigger = [s for s in finding.suggestions if s.startswith("instance type ")]
    assert bigger
    moved = training_job(
        **{**TOO_BIG, "resources": {**TOO_BIG["resources"], "instanceTypes": [bigger[0].split()[-1]]}}
    )
    assert check_fit(load(moved)) is None


def test_fit_check_is_silent_when_it_cannot_know():
    assert check_fit(load(training_job(**{**TOO_BIG, "resources": {"accelerator": "nvidia-gpu"}}))) is None
    assert check_fit(load(training_job(**{**TOO_BIG, "model": {"base": "s3://m/x/"}}))) is None


def test_fit_check_for_an_endpoint_suggests_quantization():
    shape = ModelShape.from_parameters(13_000_000_000)
    ep = load(
        endpoint(
            resources={"accelerator": "nvidia-gpu", "instanceTypes": ["g6.xlarge"]},
            server={"maxBatchSize": 1, "maxModelLen": 2048, "dtype": "bfloat16"},
        )
    )
    finding = check_fit(ep, shape)
    assert finding is not None and finding.needed_bytes > finding.available_bytes
    assert "quantization: int8" in finding.suggestions
    assert not any("inf2" in s for s in finding.suggestions)  # same accelerator only
    quantized = load(
        endpoint(
            resources={"accelerator": "nvidia-gpu", "instanceTypes": ["g6.xlarge"]},
            server={"maxBatchSize": 1, "maxModelLen": 2048, "dtype": "bfloat16", "quantization": "int8"},
        )
    )
    assert check_fit(quantized, shape) is None


def test_validate_warns_and_strict_fit_fails(tmp_path):
    path = write(tmp_path, training_job(**TOO_BIG))
    result = run("validate", path)
    assert result.exit_code == 0
    assert result.stderr.startswith(f"warning: {path}:1: spec.resources.instanceTypes: needs ")
    strict = run("validate", "--strict-fit", path)
    assert strict.exit_code == 1 and f"{path}:1: spec.resources.instanceTypes: needs " in strict.stderr
    assert run("validate", "--strict-fit", *map(str, sorted(EX.glob("*.yaml")))).exit_code == 0


def test_validate_sizes_an_endpoint_by_the_training_job_it_serves(tmp_path):
    job = training_job(
        **{**TOO_BIG, "resources": {"accelerator": "nvidia-gpu", "instanceTypes": ["p5.48xlarge"]}}
    )
    ep = endpoint(
        model={"fromTrainingJob": "job"},
        resources={"accelerator": "nvidia-gpu", "instanceTypes": ["g6.xlarge"]},
        server={"maxBatchSize": 256, "maxModelLen": 2048},
    )
    alone = run("validate", "--strict-fit", write(tmp_path, ep, "ep.yaml"))
    assert alone.exit_code == 0  # the model is unknown without its job
    both = run("validate", "--strict-fit", write(tmp_path, job, "job.yaml"), str(tmp_path / "ep.yaml"))
    assert both.exit_code == 1 and "ep.yaml:1: spec.resources.instanceTypes: needs " in both.stderr


def test_local_base_model_is_read_only_when_allowed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "intermediate_size": 14336, "vocab_size": 128256,
    }))  # fmt: skip
    job = load(
        training_job(**{**TOO_BIG, "model": {"base": str(tmp_path)}, "output": {"location": "s3://b/o/"}})
    )
    finding = check_fit(job)
    assert finding is not None and finding.needed_bytes > 100 * 1024**3  # 8B parameters, full fine-tune
    assert check_fit(job, local_files=False) is None


def test_the_commands_copies_of_core_constants_match():
    """The command repeats two core names so that `llmops --help` imports no core module."""
    from llmops import estimate_cmd
    from llmops_core.estimate import OPTIMIZER_BYTES
    from llmops_core.pricing import AS_OF

    assert list(OPTIMIZER_BYTES) == estimate_cmd.OPTIMIZERS and estimate_cmd.PRICES_AS_OF == AS_OF


def test_trainium_is_sized_per_neuroncore_process():
    """torch-neuronx runs one process per NeuronCore, each with its share of the chip's memory."""
    trn = {**TOO_BIG, "image": "example.com/neuron-trainer:1", "hyperparameters": {"batchSize": 1, "sequenceLength": 2048, "strategy": "ddp"},
           "resources": {"accelerator": "aws-trainium", "acceleratorsPerNode": 16, "instanceTypes": ["trn1.32xlarge"]}}  # fmt: skip
    job = load(training_job(**trn))
    finding = check_fit(job)
    assert finding is not None and finding.unit == "NeuronCore"
    assert finding.available_bytes == 15 * 1024**3  # (32 GiB - 2 GiB reserve) / 2 NeuronCores
    assert (
        finding.message.startswith("needs ")
        and " GiB per NeuronCore, trn1.32xlarge has 15.0 GiB" in finding.message
    )
    assert finding.suggestions[0].startswith("strategy: fsdp")
    sharded = training_job(**{**trn, "hyperparameters": {**trn["hyperparameters"], "strategy": "fsdp"}})
    assert check_fit(load(sharded)) is None  # 32 processes share the states
