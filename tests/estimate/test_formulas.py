"""The estimate's terms against the real model code: parameter counts, saved activations, KV cache.

Saved activations are counted with ``torch.autograd.graph.saved_tensors_hooks`` (live storages,
deduplicated, parameters excluded): exactly the bytes autograd keeps for backward, which is what the
per-layer formula claims to count. Shapes differ from the ones the formula was read off.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmops_core.api.presets import PRESETS
from llmops_core.estimate import (
    InferencePlan,
    LoraPlan,
    ModelShape,
    TrainingPlan,
    activation_bytes_per_token,
    inference_memory,
    kv_cache_bytes,
    training_memory,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def build(shape: ModelShape):
    config = transformers.LlamaConfig(
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        intermediate_size=shape.intermediate_size,
        vocab_size=shape.vocab_size,
        tie_word_embeddings=shape.tie_word_embeddings,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def saved_bytes(model, batch: int, seq: int, vocab: int, bf16: bool = False) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    model.config.use_cache = False
    model.train()
    ids = torch.randint(0, vocab, (batch, seq))
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16),
    ):
        model(input_ids=ids, labels=ids)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in seen.items() if ptr not in params)


SHAPE = ModelShape(192, 3, 6, 2, 640, 700)


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_preset_parameter_count_matches_the_built_model(name):
    shape = ModelShape.from_preset(name)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**PRESETS[name].llama_config()))
    assert shape.parameters == sum(p.numel() for p in model.parameters())


def test_lora_trainable_count_matches_peft():
    peft = pytest.importorskip("peft")
    lora = LoraPlan(rank=4, targets=("q_proj", "v_proj", "down_proj"))
    model = peft.get_peft_model(
        build(SHAPE), peft.LoraConfig(r=4, target_modules=list(lora.targets), task_type="CAUSAL_LM")
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora.trainable(SHAPE) == trainable


@pytest.mark.parametrize(
    ("plan", "ckpt"),
    [
        (TrainingPlan(precision="fp32"), False),
        (TrainingPlan(precision="bf16", device="accelerator"), False),
        (TrainingPlan(precision="fp32"), True),
    ],
    ids=["fp32", "bf16-autocast", "fp32-checkpointing"],
)
def test_saved_activations_match_the_per_token_formula(plan, ckpt):
    batch, seq = 2, 96
    model = build(SHAPE)
    if ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    measured = saved_bytes(model, batch, seq, SHAPE.vocab_size, bf16=plan.mixed)
    if plan.mixed:  # autocast's bf16 weight copies are saved too; the estimate books them as weight_copies
        measured -= 2 * SHAPE.matrix_parameters
    rope = 0 if ckpt else 2 * seq * SHAPE.head_dim * 4
    expected = batch * seq * activation_bytes_per_token(SHAPE, plan, checkpointed=ckpt) + rope
    assert measured == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ("q_proj", "o_proj", "down_proj")])
def test_lora_saved_activations_per_layer_match(bf16, targets):
    """Per layer (the difference between 4 and 2 layers): with a frozen embedding the first layer keeps
    less than the others, a one-layer effect the estimate leaves on the safe side."""
    peft = pytest.importorskip("peft")
    batch, seq = 2, 96
    lora = LoraPlan(rank=8, targets=targets)
    plan = TrainingPlan(precision="bf16" if bf16 else "fp32", lora=lora, device="accelerator")
    measured = {}
    for layers in (2, 4):
        shape = replace(SHAPE, num_hidden_layers=layers)
        model = peft.get_peft_model(
            build(shape),
            peft.LoraConfig(r=8, lora_dropout=0.05, target_modules=list(targets), task_type="CAUSAL_LM"),
        )
        measured[layers] = saved_bytes(model, batch, seq, SHAPE.vocab_size, bf16=bf16)
        if bf16:  # frozen and adapter matrices' bf16 casts, booked as weight_copies
            measured[layers] -= 2 * (shape.matrix_parameters + lora.trainable(shape))
    per_layer = (measured[4] - measured[2]) / 2 / (batch * seq)
    full = activation_bytes_per_token(SHAPE, plan, checkpointed=False)
    head = activation_bytes_per_token(replace(SHAPE, num_hidden_layers=0), plan, checkpointed=False)
    assert per_layer == pytest.approx((full - head) / SHAPE.num_hidden_layers, rel=0.10)


def test_kv_cache_matches_the_models_cache():
    model = build(SHAPE).eval()
    batch, seq = 3, 50
    with torch.no_grad():
        out = model(input_ids=torch.randint(0, SHAPE.vocab_size, (batch, seq)), use_cache=True)
    cache = out.past_key_values
    measured = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert kv_cache_bytes(SHAPE, batch, seq, 4) == measured


def test_sharding_and_precision_move_the_terms_the_way_they_should():
    shape = ModelShape.from_preset("1b")
    ddp = training_memory(shape, TrainingPlan(world_size=8))
    fsdp = training_memory(shape, TrainingPlan(world_size=8, strategy="fsdp"))
    assert fsdp.optimizer * 8 == ddp.optimizer == 8 * shape.parameters
    assert ddp.ddp_buckets == ddp.gradients and fsdp.ddp_buckets == 0
    assert fsdp.peak < ddp.peak
    ckpt = training_memory(shape, TrainingPlan(activation_checkpointing=True))
    assert ckpt.activations < training_memory(shape, TrainingPlan()).activations / 5
    lora = training_memory(shape, TrainingPlan(lora=LoraPlan()))
    assert lora.optimizer < ddp.optimizer / 100 and lora.weights == ddp.weights
    fp32 = inference_memory(shape, InferencePlan(dtype="fp32"))
    int8 = inference_memory(shape, InferencePlan(dtype="fp32", quantization="int8"))
    assert int8.weights < fp32.weights / 2 and int8.kv_cache == fp32.kv_cache


CP_PROBE = """
import json, os, sys, torch, torch.distributed as dist, transformers
from llmops_train import context as cp
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
batch, seq, shape = json.loads(sys.argv[1])
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape, use_cache=False)).train()
lay = cp.layout(rank, world, world, "cpu", seq)
cp.enable(model, lay)
params = {p.untyped_storage().data_ptr() for p in model.parameters()}
seen = {}
def pack(t):
    st = t.untyped_storage()
    seen[st.data_ptr()] = st.nbytes()
    return t
ids = torch.randint(0, shape["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(0))
with cp.shard(lay, ids) as (local, labels, pos), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    cp.loss(model, local, labels, pos, batch * (seq - 1))
print(json.dumps(sum(n for p, n in seen.items() if p not in params)))
dist.barrier()
dist.destroy_process_group()
# Skip interpreter finalization: a gloo worker thread that drops the last reference to a Python
# tensor after finalization has begun is killed mid-destructor and aborts the process (Python 3.11).
sys.stdout.flush()
os._exit(0)
"""


def test_context_parallel_ranks_save_what_the_estimate_divides_by_k(tmp_path):
    """Two gloo ranks running the trainer's context-parallel forward each save the bytes the estimate
    books as activations for contextParallel 2: every token-dependent term at sequence/2."""
    import json

    from tests.manifests import ROOT
    from tests.train.helpers import run_probe

    batch, seq = 2, 96
    config = {
        "hidden_size": SHAPE.hidden_size, "num_hidden_layers": SHAPE.num_hidden_layers,
        "num_attention_heads": SHAPE.num_attention_heads, "num_key_value_heads": SHAPE.num_key_value_heads,
        "intermediate_size": SHAPE.intermediate_size, "vocab_size": SHAPE.vocab_size,
    }  # fmt: skip
    probe = tmp_path / "probe.py"
    probe.write_text(CP_PROBE)
    env = {
        "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT / 'training-jobs'}",
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
    }
    run = run_probe(probe, json.dumps([batch, seq, config]), env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    per_rank = [int(line.split(":")[-1]) for line in run.stdout.splitlines() if line.strip()[-1:].isdigit()]
    assert len(per_rank) == 2
    plan = TrainingPlan(batch_size=batch, sequence_length=seq, precision="fp32", device="cpu")
    one, two = training_memory(SHAPE, plan), training_memory(SHAPE, replace(plan, context_parallel=2))
    for measured in per_rank:
        assert measured == pytest.approx(two.activations, rel=0.03)
        assert measured < 0.55 * one.activations


def test_context_parallel_divides_the_token_terms_and_adds_the_exchange():
    shape = ModelShape.from_preset("1b")
    plan = TrainingPlan(sequence_length=8192, batch_size=1, world_size=8, strategy="fsdp")
    one, four = training_memory(shape, plan), training_memory(shape, replace(plan, context_parallel=4))
    for term in ("activations", "recompute"):
        assert getattr(four, term) == pytest.approx(getattr(one, term) / 4, abs=1)
    head_grad = 4 * shape.embedding_parameters
    assert four.loss_transients - head_grad == pytest.approx((one.loss_transients - head_grad) / 4, abs=1)
    for term in ("weights", "weight_copies", "gradients", "optimizer", "fsdp_gathered", "step_transients"):
        assert getattr(four, term) == getattr(one, term)
    assert one.cp_exchange == 0 and four.cp_exchange == 2 * 8192 * shape.kv_size * 2  # bf16 keys + values
    assert four.peak < one.peak


def test_a_jobs_context_parallel_reaches_the_plan_and_the_token_count():
    from llmops_core import api
    from llmops_core.estimate import plan_for_job, run_tokens
    from tests.manifests import training_job

    def job(k: int):
        hp = {"contextParallel": k, "sequenceLength": 64, "maxSteps": 10, "batchSize": 2}
        return api.load(
            training_job(hyperparameters=hp, resources={"accelerator": "cpu", "acceleratorsPerNode": 4})
        )

    assert plan_for_job(job(2)).context_parallel == 2
    assert run_tokens(job(1)) == 10 * 2 * 64 * 4 == 2 * run_tokens(job(2))


def test_fit_check_suggests_context_parallelism_for_a_long_sequence():
    """Batch 1, FSDP and checkpointing already: only splitting the 128k-token sequence makes it fit."""
    from llmops_core import api
    from llmops_core.estimate import check_fit
    from tests.manifests import training_job

    hp = {"batchSize": 1, "sequenceLength": 131072, "strategy": "fsdp", "activationCheckpointing": True}
    res = {"accelerator": "nvidia-gpu", "acceleratorsPerNode": 4, "instanceTypes": ["g6e.12xlarge"]}
    doc = training_job(
        model={"base": "s3://b/m/"}, hyperparameters=hp, resources=res, output={"location": "s3://b/o/"}
    )
    shape = replace(ModelShape.from_preset("1b"), max_position_embeddings=131072)
    finding = check_fit(api.load(doc), shape)
    assert finding is not None and finding.suggestions[0].startswith("contextParallel: 2 (")
    hp["contextParallel"] = 2
    assert (
        check_fit(
            api.load(
                training_job(
                    model={"base": "s3://b/m/"},
                    hyperparameters=hp,
                    resources=res,
                    output={"location": "s3://b/o/"},
                )
            ),
            shape,
        )
        is None
    )


def test_on_cpu_the_exchange_also_holds_the_causal_mask():
    plan = TrainingPlan(
        batch_size=1, sequence_length=2048, precision="fp32", device="cpu", context_parallel=2
    )
    kv = 2 * 2048 * SHAPE.kv_size * 4
    assert training_memory(SHAPE, plan).cp_exchange == kv + 4 * 1024 * 2048
