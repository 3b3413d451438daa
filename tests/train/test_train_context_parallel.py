"""Context parallelism under torchrun with gloo: sequences split across ranks train like one process.

On CPU the attention exchange is the all-gather path (PyTorch's ring attention dispatches only CUDA
kernels); the sharding, load balancing, global positions, loss shares and gradient sums are the same
code on both devices.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_core import api
from tests.manifests import training_job
from tests.train.helpers import env, losses, metrics, run_probe, train, write_job

STEPS = 8
# Small enough for 4 processes on 2 cores; long enough that the loss visibly falls.
HP = {"maxSteps": STEPS, "sequenceLength": 64, "evalInterval": 4, "evalBatches": 16}  # all held-out blocks


def job(path: Path, world: int, **hp: object) -> Path:
    hyper = HP | hp
    return write_job(
        path / "job.yaml",
        hyperparameters=hyper,
        resources={"accelerator": "cpu", "acceleratorsPerNode": world},
        checkpoint={"interval": 4, "keep": 2},
    )


def torchrun(tmp: Path, manifest: Path, world: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world)]
    cmd += ["-m", "llmops_train", "--job", str(manifest), "--device", "cpu", *args]
    return subprocess.run(cmd, env=env(tmp), cwd=tmp, capture_output=True, text=True, timeout=600)


GRADIENT_PROBE = """
import json, os, sys, torch, torch.distributed as dist
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from llmops_train import context as cp
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
lora = sys.argv[1] == "lora"
config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=100, max_position_embeddings=64)
def build():
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                                 init_lora_weights=False))
    return model
reference, model = build(), build()
ids = torch.randint(0, 100, (2, 32), generator=torch.Generator().manual_seed(1))
full = reference(input_ids=ids, labels=ids).loss
full.backward()
lay = cp.layout(rank, world, world, "cpu", 32)
cp.enable(model, lay)
with cp.shard(lay, ids) as (local, labels, pos):
    share = cp.loss(model, local, labels, pos, 2 * 31)
    share.backward()
total = share.detach().clone()
dist.all_reduce(total)
errors = []
for mine, ref in zip(model.parameters(), reference.parameters()):
    if mine.requires_grad:
        grad = mine.grad.clone()
        dist.all_reduce(grad)
        errors.append((grad - ref.grad).abs().max().item() / (ref.grad.abs().max().item() or 1))
if rank == 0:
    print(json.dumps({"cp": total.item(), "full": full.item(), "grad": max(errors)}))
dist.barrier()
dist.destroy_process_group()
# Skip interpreter finalization: a gloo worker thread that drops the last reference to a Python
# tensor after finalization has begun is killed mid-destructor and aborts the process (Python 3.11).
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_cp_gradients_equal_full_attention(tmp_path: Path, variant: str) -> None:
    """The exchange is exact: 2 ranks' summed loss shares and gradients equal one process's, with
    grouped-query attention (2 kv heads for 4) and, with LoRA, through peft's wrapper."""
    probe = tmp_path / "probe.py"
    probe.write_text(GRADIENT_PROBE)
    run = run_probe(probe, variant, env=env(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if '"grad"' in x)
    out = json.loads(line[line.index("{") :])
    assert out["cp"] == pytest.approx(out["full"], rel=1e-6)
    assert out["grad"] < 1e-5


def evals(path: Path) -> dict[int, float]:
    return {r["step"]: r["eval_loss"] for r in metrics(path) if "eval_loss" in r}


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One process, batch 8: the reference trajectory."""
    tmp = tmp_path_factory.mktemp("single")
    run = train(tmp, job(tmp, 1, batchSize=8))
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp / "ckpt" / "metrics.jsonl"


def assert_same_trajectory(reference: Path, other: Path) -> None:
    a, b = losses(reference), losses(other)
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert b[step] == pytest.approx(a[step], abs=2e-3), (step, a[step], b[step])
    assert a[STEPS] < a[1] - 1.0
    ea, eb = evals(reference), evals(other)
    assert sorted(ea) == sorted(eb) == [4, 8]
    for step in ea:
        assert eb[step] == pytest.approx(ea[step], abs=2e-3), (step, ea[step], eb[step])


def test_two_cp_ranks_match_one_process(single: Path, tmp_path: Path) -> None:
    """K = 2 at world 2: each sequence of the same batch of 8 is split in two (chunks 0+3 and 1+2)."""
    run = torchrun(tmp_path, job(tmp_path, 2, batchSize=8, contextParallel=2), 2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_trajectory(single, tmp_path / "ckpt" / "metrics.jsonl")
    assert (tmp_path / "pvc" / "out" / "model" / "model.safetensors").is_file()


def test_cp_composes_with_fsdp_over_two_dp_groups(single: Path, tmp_path: Path) -> None:
    """World 4 = 2 dp groups x K = 2, FSDP2 over all four ranks: batch 4 per dp group = the same 8.
    With activation checkpointing too: the recompute in backward repeats the exchange."""
    manifest = job(tmp_path, 4, batchSize=4, contextParallel=2, strategy="fsdp", activationCheckpointing=True)
    run = torchrun(tmp_path, manifest, 4)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_trajectory(single, tmp_path / "ckpt" / "metrics.jsonl")


def test_cp_resume_is_exact(tmp_path: Path) -> None:
    """Stopped at step 4 and restarted, a K = 2 run ends with the uninterrupted run's losses."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    for d in (full, cut):
        d.mkdir()
        job(d, 2, batchSize=4, contextParallel=2)
    assert torchrun(full, full / "job.yaml", 2).returncode == 0
    first = torchrun(cut, cut / "job.yaml", 2, "--max-steps", "4")
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(losses(cut / "ckpt" / "metrics.jsonl")) == [1, 2, 3, 4]
    second = torchrun(cut, cut / "job.yaml", 2)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr
    assert losses(cut / "ckpt" / "metrics.jsonl") == losses(full / "ckpt" / "metrics.jsonl")


def test_world_not_divisible_by_cp_is_one_line(tmp_path: Path) -> None:
    """The manifest asks for world 4 (valid), torchrun starts 3 processes: the trainer names the field."""
    run = torchrun(tmp_path, job(tmp_path, 4, contextParallel=4), 3)
    assert run.returncode != 0
    assert "llmops-train: error: hyperparameters.contextParallel 4 needs a world size" in run.stderr


@pytest.mark.parametrize(
    ("hp", "resources", "ok"),
    [
        ({"contextParallel": 2, "sequenceLength": 64}, {"acceleratorsPerNode": 2}, True),
        ({"contextParallel": 4, "sequenceLength": 64}, {"acceleratorsPerNode": 4, "nodes": 2}, True),
        ({"contextParallel": 1, "sequenceLength": 63}, {"acceleratorsPerNode": 3}, True),
        ({"contextParallel": 2, "sequenceLength": 66}, {"acceleratorsPerNode": 2}, False),  # 66 % 4
        ({"contextParallel": 4, "sequenceLength": 64}, {"acceleratorsPerNode": 2}, False),  # world 2
        ({"contextParallel": 2, "sequenceLength": 64}, {"acceleratorsPerNode": 3}, False),  # world 3
    ],
)
def test_manifest_rule_names_the_field(hp: dict, resources: dict, ok: bool) -> None:
    """sequenceLength divisible by 2K (head-tail load balancing), nodes x processes divisible by K."""
    doc = training_job(hyperparameters=hp, resources={"accelerator": "cpu", **resources})
    if ok:
        assert api.load(doc).spec.hyperparameters.context_parallel == hp["contextParallel"]
        return
    with pytest.raises(api.SpecError) as err:
        api.load(doc)
    (issue,) = err.value.issues
    if hp["sequenceLength"] % (2 * hp["contextParallel"]):  # the CRD's CEL rule, checked alike here
        assert issue.path == "spec.hyperparameters"
        assert "contextParallel K needs sequenceLength divisible by 2K" in issue.message
    else:
        world = resources["acceleratorsPerNode"] * resources.get("nodes", 1)
        assert issue.path == "spec.hyperparameters.contextParallel"
        assert f"this job has {world}" in issue.message


def test_context_parallel_below_one_is_refused() -> None:
    with pytest.raises(api.SpecError) as err:
        api.load(training_job(hyperparameters={"contextParallel": 0}))
    assert [i.path for i in err.value.issues] == ["spec.hyperparameters.contextParallel"]
