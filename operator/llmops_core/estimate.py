"""Memory, fit and cost estimates for training and serving, before any accelerator is spent.

Training memory per device follows the bundled trainer exactly: fp32 weights, fp32 gradients and
optimizer states (autocast bf16/fp16 keeps fp32 master weights and saves bf16 copies of the matrices it
casts), the tensors autograd saves for backward (counted per Llama layer in the manner of Korthikanti
et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"), and the loss's
vocabulary-sized transients. Peak memory is the largest of three moments of a step (the loss, with
every saved activation alive; the checkpointed backward; the optimizer step, with every gradient
alive) on top of what persists. ``docs/estimate.md`` derives each term; ``bench/estimate_check.py``
checks the sum against measured peak memory of the real trainer model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from .api.hardware import INSTANCES, NEURONCORES_PER_DEVICE, PEAK_BF16_TFLOPS, Instance
from .api.inference import InferenceEndpoint
from .api.presets import PRESETS
from .api.training import TrainingJob
from .pricing import AS_OF, ON_DEMAND_USD_PER_HOUR

GiB = 1024**3
# Kept free on each accelerator: CUDA/Neuron runtime context, NCCL buffers, allocator fragmentation.
RUNTIME_RESERVE_GIB = 2.0
# vLLM claims this fraction of device memory (its --gpu-memory-utilization default).
VLLM_MEMORY_FRACTION = 0.9
# peft's default LoRA targets for Llama-style models.
LORA_DEFAULT_TARGETS = ("q_proj", "v_proj")
OPTIMIZER_BYTES = {"adamw": 8, "adamw-8bit": 2, "sgd": 4}  # state bytes per trainable parameter
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}

Precision = Literal["fp32", "bf16", "fp16"]


class EstimateError(ValueError):
    """Input the estimate cannot use (unknown preset, config.json without a needed key): one line."""


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """The dimensions memory depends on, for a Llama-style decoder (RMSNorm, SwiGLU, GQA, RoPE)."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    source: str = ""  # where the shape came from, for reports
    inferred: bool = False  # shape guessed from a parameter count

    @property
    def kv_size(self) -> int:
        return self.hidden_size * self.num_key_value_heads // self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer."""
        h, kv, i = self.hidden_size, self.kv_size, self.intermediate_size
        return {
            "q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }  # fmt: skip

    @property
    def layer_matrix_parameters(self) -> int:
        return sum(a * b for a, b in self.module_shapes().values())

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def parameters(self) -> int:
        h, n = self.hidden_size, self.num_hidden_layers
        head = 0 if self.tie_word_embeddings else self.embedding_parameters
        return self.embedding_parameters + n * (self.layer_matrix_parameters + 2 * h) + h + head

    @property
    def matrix_parameters(self) -> int:
        """Parameters autocast casts to bf16 (every Linear, the output head included)."""
        return self.num_hidden_layers * self.layer_matrix_parameters + self.embedding_parameters

    @classmethod
    def from_preset(cls, name: str) -> ModelShape:
        if name not in PRESETS:
            raise EstimateError(f"unknown preset {name!r}; one of {', '.join(PRESETS)}")
        return cls(**PRESETS[name].llama_config(), source=f"preset {name}")

    @classmethod
    def from_hf_config(cls, config: dict, source: str = "config.json") -> ModelShape:
        """From a Hugging Face ``config.json`` of a Llama-style model (Llama, Mistral, Qwen2, ...)."""
        text = config.get("text_config") or config
        missing = [
            k
            for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
            if not isinstance(text.get(k), int)
        ]
        if missing:
            raise EstimateError(f"{source}: missing integer field(s) {', '.join(missing)}")
        h, heads = text["hidden_size"], text["num_attention_heads"]
        return cls(
            hidden_size=h,
            num_hidden_layers=text["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=text.get("num_key_value_heads") or heads,
            intermediate_size=text.get("intermediate_size") or 4 * h,
            vocab_size=text["vocab_size"],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=text.get("max_position_embeddings") or 4096,
            source=source,
        )

    @classmethod
    def from_parameters(cls, count: int) -> ModelShape:
        """A Llama-shaped guess: hidden = 128 x layers (Llama 2 7B's ratio), SwiGLU 8/3 h, 32k vocab.

        Weights, gradients and optimizer states depend only on the count; activations and the KV cache
        need the shape, so they are marked as inferred.
        """
        if count < 1_000_000:
            raise EstimateError(f"parameter count {count} is too small to infer a shape (need ≥ 1M)")
        layers = max(2, round((count / (12 * 128**2)) ** (1 / 3)))
        hidden = max(128, round(math.sqrt(count / (12 * layers)) / 128) * 128)
        inter = round(8 * hidden / 3 / 256) * 256
        heads = hidden // 128
        return cls(hidden, layers, heads, heads, inter, 32000, source=f"{count:,} parameters", inferred=True)


def load_model_shape(spec: str) -> ModelShape:
    """A preset name, a path to ``config.json`` (or its directory), or a parameter count (7e9, 7B, 350M)."""
    if spec in PRESETS:
        return ModelShape.from_preset(spec)
    path = Path(spec)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.is_file():
        try:
            config = json.loads(path.read_text())
        except OSError as e:
            raise EstimateError(f"{path}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise EstimateError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(config, dict):
            raise EstimateError(f"{path}: expected a JSON object")
        return ModelShape.from_hf_config(config, source=str(path))
    count = parse_count(spec)
    if count is None:
        raise EstimateError(
            f"{spec!r} is not a preset ({', '.join(PRESETS)}), a config.json or a parameter count (e.g. 7B)"
        )
    return ModelShape.from_parameters(count)


def parse_count(text: str) -> int | None:
    units = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    t = text.strip().upper().replace("_", "").replace(",", "")
    scale = units.get(t[-1:], 1.0) if t else 1.0
    if t[-1:] in units:
        t = t[:-1]
    try:
        value = float(t) * scale
    except ValueError:
        return None
    return int(value) if value > 0 and math.isfinite(value) else None


# --- training ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoraPlan:
    rank: int = 8
    targets: tuple[str, ...] = LORA_DEFAULT_TARGETS
    dropout: float = 0.05

    def trainable(self, shape: ModelShape) -> int:
        shapes = shape.module_shapes()
        return shape.num_hidden_layers * sum(self.rank * (shapes[t][0] + shapes[t][1]) for t in self.targets)


@dataclass(frozen=True)
class TrainingPlan:
    batch_size: int = 8
    sequence_length: int = 512
    precision: Precision = "bf16"
    optimizer: str = "adamw"
    activation_checkpointing: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"
    world_size: int = 1
    context_parallel: int = 1  # ranks each sequence is split across (hyperparameters.contextParallel)
    lora: LoraPlan | None = None
    device: Literal["accelerator", "cpu"] = "accelerator"  # the trainer runs fp32 on CPU

    @property
    def mixed(self) -> bool:
        return self.precision != "fp32" and self.device != "cpu"


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes per device; ``peak`` is what must fit."""

    weights: int
    weight_copies: int  # bf16 copies autocast saves for backward (not sharded by FSDP2)
    gradients: int
    optimizer: int
    ddp_buckets: int
    fsdp_gathered: int
    activations: int
    loss_transients: int
    recompute: int  # one layer's activations rebuilt during backward with checkpointing
    step_transients: int
    cp_exchange: int  # context parallelism: one layer's keys and values of the whole sequence, gathered
    trainable_parameters: int
    parameters: int

    checkpointed: bool = False

    @property
    def backward_start(self) -> int:
        """The loss moment: every saved activation and the loss's gradient buffers, no parameter
        gradient yet. With checkpointing autocast's weight copies are alive only until here (the
        recompute casts each layer again), so they count here instead of in ``persistent``."""
        copies = self.weight_copies if self.checkpointed else 0
        return self.activations + self.loss_transients + copies + self.cp_exchange

    @property
    def recompute_phase(self) -> int:
        """With checkpointing, during backward: the kept layer inputs plus one layer rebuilt."""
        return self.activations + self.recompute + self.cp_exchange

    @property
    def optimizer_step(self) -> int:
        return self.gradients + self.step_transients

    @property
    def persistent(self) -> int:
        copies = 0 if self.checkpointed else self.weight_copies
        return self.weights + copies + self.optimizer + self.ddp_buckets + self.fsdp_gathered

    @property
    def peak(self) -> int:
        return self.persistent + max(self.backward_start, self.recompute_phase, self.optimizer_step)

    @property
    def naive_sum(self) -> int:
        """Every term at once: the folklore upper bound."""
        return self.persistent + self.gradients + self.backward_start + self.recompute


def activation_bytes_per_token(shape: ModelShape, plan: TrainingPlan, *, checkpointed: bool) -> float:
    """Bytes autograd saves per token, counted tensor by tensor for the transformers Llama with SDPA.

    Per layer, fp32: norms 2x(x, x*rstd, rstd) and their outputs; q, k, v after RoPE, attention
    output, SDPA's logsumexp; SwiGLU gate, silu(gate), up and their product. Under autocast the
    Linear inputs are saved again as bf16 casts while the residual stream and norms stay fp32.
    Korthikanti's GPT formula (34 + 5as/h bytes per token per hidden unit) counts the same way, with
    dropout masks and the s^2 attention scores that SDPA's fused kernel does not keep.
    """
    h, kv, i, a, v = (
        shape.hidden_size,
        shape.kv_size,
        shape.intermediate_size,
        shape.num_attention_heads,
        shape.vocab_size,
    )
    if checkpointed:
        per_layer = 4 * h  # only each layer's fp32 input is kept
    elif plan.lora is not None:
        per_layer = _lora_layer_bytes(shape, plan.lora, plan.mixed)
    elif plan.mixed:
        per_layer = 30 * h + 4 * kv + 8 * i + 8 + 4 * a
    else:
        per_layer = 32 * h + 8 * kv + 16 * i + 8 + 4 * a
    # Final norm (+ its cast), the fp32 log-softmax of the logits, input ids and labels.
    head = (10 * h if plan.mixed else 12 * h) + 4 + 4 * v + 16
    return shape.num_hidden_layers * per_layer + head


def _lora_layer_bytes(shape: ModelShape, lora: LoraPlan, mixed: bool) -> float:
    """Per token and layer with frozen base matrices: a frozen Linear keeps no input (its backward
    needs only the weight), a frozen norm no normalised copy; each adapter keeps its dropout output and
    mask and its rank-r output. Counted like the full formulas (fp32, and bf16 autocast)."""
    h, kv, i, a = shape.hidden_size, shape.kv_size, shape.intermediate_size, shape.num_attention_heads
    shapes = shape.module_shapes()
    if mixed:
        total, per_rank, per_in, down = 16 * h + 4 * kv + 6 * i + 8 + 4 * a, 2, 4, 2 * i
    else:
        total, per_rank, per_in, down = 20 * h + 8 * kv + 12 * i + 8 + 4 * a, 4, 6, 4 * i
    for t in lora.targets:
        total += per_rank * lora.rank + (per_in * shapes[t][0] if lora.dropout > 0 else 0)
        if t == "down_proj":
            total += down  # its input is kept again, for the adapter
    return total


def _weight_copies(shape: ModelShape, plan: TrainingPlan) -> int:
    """bf16 copies of the matrices that autocast makes and autograd keeps for backward.

    Trainable weights' casts are cached for the whole forward; a frozen weight is cast at each use and
    kept only where autograd saves it, which inside a checkpointed layer it does not: with LoRA and
    checkpointing only the output head's copy remains.
    """
    if not plan.mixed:
        return 0
    if plan.lora is not None and plan.activation_checkpointing:
        return 2 * shape.embedding_parameters
    return 2 * shape.matrix_parameters


def training_memory(shape: ModelShape, plan: TrainingPlan) -> TrainingMemory:
    if plan.optimizer not in OPTIMIZER_BYTES:
        raise EstimateError(f"optimizer {plan.optimizer!r}: one of {', '.join(OPTIMIZER_BYTES)}")
    params = shape.parameters
    trainable = plan.lora.trainable(shape) if plan.lora else params
    frozen = params - trainable
    shard = plan.world_size if plan.strategy == "fsdp" and plan.world_size > 1 else 1
    # Context parallelism: each rank holds sequence/K positions of every sequence, so every term that
    # scales with tokens (activations, RoPE tables, loss transients, the recomputed layer) divides by K.
    cp = plan.context_parallel
    local_seq = plan.sequence_length / cp
    tokens = plan.batch_size * local_seq
    act_bytes = 2 if plan.mixed else 4
    ckpt = plan.activation_checkpointing
    per_token = activation_bytes_per_token(shape, plan, checkpointed=ckpt)
    rope = 2 * local_seq * shape.head_dim * 4 * (0 if ckpt else 1)
    full_layer = activation_bytes_per_token(shape, plan, checkpointed=False)
    layer_full = (
        full_layer - activation_bytes_per_token(shape, plan, checkpointed=True)
    ) / shape.num_hidden_layers
    if plan.lora is not None:  # the largest trainable tensor: an adapter's A or B
        largest = plan.lora.rank * max(max(shape.module_shapes()[t]) for t in plan.lora.targets)
    else:
        largest = max(shape.embedding_parameters, max(a * b for a, b in shape.module_shapes().values()))
    # AdamW on CPU updates one tensor at a time (a few temporaries of the largest); on accelerators the
    # foreach/fused kernels hold about one extra copy of the shard's states.
    step_tmp = 2 * 4 * largest if plan.device == "cpu" else 4 * trainable // shard
    head_grad = 4 * shape.embedding_parameters if plan.lora is None and not shape.tie_word_embeddings else 0
    return TrainingMemory(
        weights=4 * (trainable + frozen) // shard,
        weight_copies=_weight_copies(shape, plan),
        gradients=4 * trainable // shard,
        optimizer=OPTIMIZER_BYTES[plan.optimizer] * trainable // shard,
        ddp_buckets=4 * trainable if plan.strategy == "ddp" and plan.world_size > 1 else 0,
        fsdp_gathered=2 * 4 * (shape.layer_matrix_parameters + 2 * shape.hidden_size) if shard > 1 else 0,
        activations=int(tokens * per_token + rope),
        # The loss's gradient and log-softmax backward: two more fp32 [tokens, vocab] buffers, then the
        # output head's weight gradient.
        loss_transients=int(2 * 4 * tokens * shape.vocab_size) + head_grad,
        recompute=int(tokens * layer_full) if ckpt else 0,
        step_transients=step_tmp,
        cp_exchange=_cp_exchange(shape, plan, act_bytes) if cp > 1 else 0,
        trainable_parameters=trainable,
        parameters=params,
        checkpointed=ckpt,
    )


def _cp_exchange(shape: ModelShape, plan: TrainingPlan, act_bytes: int) -> int:
    """Keys and values of one layer for the whole sequence, as the exchange assembles them (PyTorch's
    ring attention all-gathers by default; the CPU path gathers too), and on CPU the causal mask of the
    local queries against every key, which SDPA's CPU kernel keeps as fp32."""
    b, n = plan.batch_size, plan.sequence_length
    mask = 4 * b * (n // plan.context_parallel) * n if plan.device == "cpu" else 0
    return 2 * b * n * shape.kv_size * act_bytes + mask


def plan_for_job(job: TrainingJob, device: Literal["accelerator", "cpu"] | None = None) -> TrainingPlan:
    hp, res, lora = job.spec.hyperparameters, job.spec.resources, job.spec.model.lora
    return TrainingPlan(
        batch_size=hp.batch_size,
        sequence_length=hp.sequence_length,
        precision=hp.precision,
        activation_checkpointing=hp.activation_checkpointing,
        strategy=hp.strategy,
        world_size=res.nodes * res.processes_per_node,
        context_parallel=hp.context_parallel,
        lora=LoraPlan(lora.rank, tuple(lora.target_modules) or LORA_DEFAULT_TARGETS, lora.dropout)
        if lora
        else None,
        device=device or ("cpu" if res.accelerator == "cpu" else "accelerator"),
    )


# --- inference ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferencePlan:
    batch_size: int = 16
    context: int = 2048
    dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    quantization: Literal["none", "int8", "fp8", "int4"] = "none"
    devices: int = 1  # tensor-parallel devices per replica
    runtime: Literal["llmops", "vllm"] = "llmops"


@dataclass(frozen=True)
class InferenceMemory:
    weights: int
    kv_cache: int  # live keys and values for batch x context
    kv_growth: int  # the bundled server's cache buffers double when full: up to one more live size
    working: int  # one prefill's layer activations and the last-token logits
    devices: int

    @property
    def peak(self) -> int:
        return self.weights + self.kv_cache + self.kv_growth + self.working


def kv_cache_bytes(shape: ModelShape, batch: int, context: int, dtype_bytes: float) -> int:
    """Keys and values of every layer: 2 x layers x batch x context x kv heads x head dim x bytes."""
    return int(2 * shape.num_hidden_layers * batch * context * shape.kv_size * dtype_bytes)


def inference_memory(shape: ModelShape, plan: InferencePlan) -> InferenceMemory:
    """Per device: weights split over ``devices`` (tensor parallel), each device holds its heads' KV."""
    act = WEIGHT_BYTES[plan.dtype]
    if plan.quantization == "none":
        weights = shape.parameters * act
    else:  # matrices quantized (with one fp32 scale per output channel), embeddings and norms not
        q = WEIGHT_BYTES[plan.quantization]
        matrices = shape.matrix_parameters
        scales = 4 * (
            shape.num_hidden_layers * sum(o for _, o in shape.module_shapes().values()) + shape.vocab_size
        )
        weights = matrices * q + scales + (shape.parameters - matrices) * act
    kv = kv_cache_bytes(shape, plan.batch_size, plan.context, act)
    h, i = shape.hidden_size, shape.intermediate_size
    working = plan.context * (4 * h + 3 * i) * act + plan.batch_size * shape.vocab_size * 4
    d = plan.devices
    growth = kv // d if plan.runtime == "llmops" else 0  # vLLM's paged blocks are preallocated
    return InferenceMemory(int(weights / d), kv // d, growth, int(working / d), d)


# --- hardware and cost -------------------------------------------------------------------------


def usable_bytes(instance: Instance, runtime: str = "llmops") -> int:
    total = instance.device_memory_gib * GiB
    if runtime == "vllm":
        return int(total * VLLM_MEMORY_FRACTION)
    return int(total - RUNTIME_RESERVE_GIB * GiB)


def training_processes(instance_type: str) -> int:
    """Training processes per device: one, but one per NeuronCore on Trainium (torch-neuronx), each
    with its share of the chip's memory."""
    return NEURONCORES_PER_DEVICE.get(instance_type.split(".", 1)[0], 1)


def usable_per_process(instance_type: str) -> int:
    return usable_bytes(INSTANCES[instance_type]) // training_processes(instance_type)


@dataclass(frozen=True)
class Option:
    """One way to run the workload on an instance type."""

    instance_type: str
    count: int
    devices: int  # per instance
    device_memory_gib: int
    needed_bytes: int  # per device
    usd_per_hour: float | None  # all instances together
    hours: float | None
    usd_per_run: float | None

    def as_dict(self) -> dict:
        return asdict(self)


TRAINING_ACCELERATORS = {"nvidia-gpu", "aws-trainium"}
INFERENCE_ACCELERATORS = {"nvidia-gpu", "aws-inferentia", "aws-trainium"}


def training_options(
    shape: ModelShape, plan: TrainingPlan, tokens: int | None = None, mfu: float = 0.4, max_nodes: int = 64
) -> list[Option]:
    """Per family, the cheapest instance type and count on which every process fits (FSDP shards further).

    With DDP each device holds everything, so more nodes never help; with FSDP the count grows until
    the shard fits. ``tokens`` (the whole run) gives hours from 6 x params x tokens at ``mfu``.
    """
    out = []
    for itype, inst in INSTANCES.items():
        if inst.accelerator not in TRAINING_ACCELERATORS:
            continue
        procs = inst.devices * training_processes(itype)
        counts = range(1, max_nodes + 1) if plan.strategy == "fsdp" else [max(1, plan.world_size // procs)]
        for n in counts:
            if n * procs % plan.context_parallel:  # a cp group must fill whole processes
                continue
            p = replace(plan, world_size=n * procs, device="accelerator")
            need = training_memory(shape, p).peak
            if need <= usable_per_process(itype):
                out.append(_option(itype, inst, n, need, shape, tokens, mfu))
                break
    return _cheapest_per_family(out)


def inference_options(shape: ModelShape, plan: InferencePlan) -> list[Option]:
    """The smallest size of each family whose devices hold one replica (tensor parallel over its devices).

    vLLM sizes its batch to the memory left after the weights, so it needs room for one full-length
    sequence; the bundled server needs the whole batch.
    """
    if plan.runtime == "vllm":
        plan = replace(plan, batch_size=1)
    # The bundled server runs on CUDA (or CPU); vLLM also on Neuron devices (vllm-neuron).
    kinds = INFERENCE_ACCELERATORS if plan.runtime == "vllm" else {"nvidia-gpu"}
    out = []
    by_family: dict[str, list[tuple[str, Instance]]] = {}
    for itype, inst in INSTANCES.items():
        if inst.accelerator in kinds:
            by_family.setdefault(itype.split(".")[0], []).append((itype, inst))
    for members in by_family.values():
        ranked = sorted(members, key=lambda m: (m[1].devices, ON_DEMAND_USD_PER_HOUR.get(m[0]) or math.inf))
        for itype, inst in ranked:
            need = inference_memory(shape, replace(plan, devices=inst.devices)).peak
            if need <= usable_bytes(inst, plan.runtime):
                out.append(_option(itype, inst, 1, need, shape, None, 0.0))
                break
    return sorted(out, key=lambda o: (o.usd_per_hour is None, o.usd_per_hour or 0.0))


def _cheapest_per_family(options: list[Option]) -> list[Option]:
    """One option per instance family: the cheapest run when run time is known, else the cheapest hour."""

    def cost(o: Option) -> float:
        value = o.usd_per_run if o.usd_per_run is not None else o.usd_per_hour
        return math.inf if value is None else value

    best: dict[str, Option] = {}
    for o in options:
        family = o.instance_type.split(".")[0]
        if family not in best or cost(o) < cost(best[family]):
            best[family] = o
    return sorted(best.values(), key=cost)


def _option(
    itype: str, inst: Instance, n: int, need: int, shape: ModelShape, tokens: int | None, mfu: float
) -> Option:
    price = ON_DEMAND_USD_PER_HOUR.get(itype)
    per_hour = None if price is None else round(price * n, 4)
    hours = None
    tflops = PEAK_BF16_TFLOPS.get(itype.split(".")[0])
    if tokens and tflops and mfu > 0:
        hours = 6 * shape.parameters * tokens / (n * inst.devices * tflops * 1e12 * mfu) / 3600
    cost = None if hours is None or per_hour is None else round(hours * per_hour, 2)
    return Option(itype, n, inst.devices, inst.device_memory_gib, need, per_hour, hours, cost)


def run_tokens(job: TrainingJob) -> int | None:
    """Tokens a job processes in all, when its step limit says so."""
    hp, res = job.spec.hyperparameters, job.spec.resources
    if hp.max_steps is None:
        return None
    groups = res.nodes * res.accelerators_per_node // hp.context_parallel  # a cp group shares its sequences
    return hp.max_steps * hp.batch_size * hp.sequence_length * hp.gradient_accumulation * groups


# --- fit check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitFinding:
    """A resource whose estimate exceeds its accelerator's memory: the numbers and what would fit."""

    kind: str  # TrainingJob | InferenceEndpoint
    name: str
    instance_type: str
    needed_bytes: int  # per device (per NeuronCore process on Trainium)
    available_bytes: int  # usable per device (or NeuronCore process)
    suggestions: list[str] = field(default_factory=list)
    unit: str = "accelerator"

    @property
    def message(self) -> str:
        need, have = self.needed_bytes / GiB, self.available_bytes / GiB
        text = (
            f"needs {need:.1f} GiB per {self.unit}, {self.instance_type} has {have:.1f} GiB usable"
            f" ({RUNTIME_RESERVE_GIB:g} GiB kept for the runtime)"
        )
        if self.suggestions:
            text += "; would fit: " + "; ".join(self.suggestions)
        return text

    def as_dict(self) -> dict:
        return asdict(self) | {"message": self.message}


def shape_for(resource: TrainingJob | InferenceEndpoint, *, local_files: bool = True) -> ModelShape | None:
    """The model a resource names, when it can be known offline: a preset, or (``local_files``) a
    local directory's config.json. The operator passes ``local_files=False``: a path in a spec means
    a path in the pod, not on the operator's disk."""
    if isinstance(resource, TrainingJob):
        if resource.spec.model.preset:
            return ModelShape.from_preset(resource.spec.model.preset)
        location = resource.spec.model.base
    else:
        location = resource.spec.model.location
    if not local_files:
        return None
    if location and "://" not in location and (Path(location) / "config.json").is_file():
        try:
            return load_model_shape(location)
        except EstimateError:
            return None
    return None


def check_fit(
    resource: TrainingJob | InferenceEndpoint, shape: ModelShape | None = None, *, local_files: bool = True
) -> FitFinding | None:
    """None when the resource fits, or when it cannot be told offline (model unknown, no listed
    instance type). ``shape`` overrides the model the resource names (see :func:`shape_for`).

    With several instance types the smallest device decides: the scheduler may pick any of them.
    """
    shape = shape or shape_for(resource, local_files=local_files)
    if shape is None:
        return None
    types = [t for t in resource.spec.resources.instance_types if t in INSTANCES]
    if not types:
        return None
    itype = min(types, key=lambda t: INSTANCES[t].device_memory_gib)
    inst = INSTANCES[itype]
    if isinstance(resource, TrainingJob):
        return _check_training(resource, shape, itype, inst)
    return _check_inference(resource, shape, itype, inst)


def _check_training(job: TrainingJob, shape: ModelShape, itype: str, inst: Instance) -> FitFinding | None:
    plan = plan_for_job(job, device="accelerator")
    need, have = training_memory(shape, plan).peak, usable_per_process(itype)
    if need <= have:
        return None
    nodes = job.spec.resources.nodes
    tips = []
    # Cheapest changes first; each is tried alone, then with activation checkpointing and smaller batches.
    for change in _training_changes(plan, shape, itype, have, nodes):
        tips.append(change)
        if len(tips) == 3:
            break
    bigger = _bigger_instance(need, inst)  # same processes, more memory each
    if bigger:
        tips.append(f"instance type {bigger}")
    unit = "NeuronCore" if training_processes(itype) > 1 else "accelerator"
    return FitFinding("TrainingJob", job.metadata.name, itype, need, have, tips, unit)


def _training_changes(plan: TrainingPlan, shape: ModelShape, itype: str, have: int, nodes: int):
    """Spec edits (as the manifest spells them) under which the job fits this instance type."""
    ckpts = [False, True] if not plan.activation_checkpointing else [True]
    for ckpt in ckpts:
        base = replace(plan, activation_checkpointing=ckpt)
        words = ["activationCheckpointing: true"] if ckpt and not plan.activation_checkpointing else []
        if words and training_memory(shape, base).peak <= have:
            yield _say(words, training_memory(shape, base).peak)
            return
        if plan.strategy == "ddp" and training_memory(shape, replace(base, strategy="fsdp")).peak <= have:
            yield _say(
                [*words, "strategy: fsdp"], training_memory(shape, replace(base, strategy="fsdp")).peak
            )
            return
        more = _fewest_nodes(shape, replace(base, strategy="fsdp"), itype, have)
        if more and more > nodes:
            fsdp = [] if plan.strategy == "fsdp" else ["strategy: fsdp"]
            p = replace(
                base, strategy="fsdp", world_size=more * INSTANCES[itype].devices * training_processes(itype)
            )
            yield _say([*words, *fsdp, f"nodes: {more}"], training_memory(shape, p).peak)
        for b in sorted({plan.batch_size // 2, plan.batch_size // 4, 1}, reverse=True):
            if 1 <= b < plan.batch_size and training_memory(shape, replace(base, batch_size=b)).peak <= have:
                accum = f"gradientAccumulation x{plan.batch_size // b}"
                yield _say(
                    [*words, f"batchSize: {b} ({accum})"],
                    training_memory(shape, replace(base, batch_size=b)).peak,
                )
                break
        # Long sequences: split each across K ranks of the same world (activations divide by K).
        for k in (2, 4, 8):
            p = replace(base, context_parallel=plan.context_parallel * k)
            fits = (
                p.world_size % p.context_parallel == 0 and p.sequence_length % (2 * p.context_parallel) == 0
            )
            if fits and training_memory(shape, p).peak <= have:
                yield _say([*words, f"contextParallel: {p.context_parallel}"], training_memory(shape, p).peak)
                break


def _say(edits: list[str], peak: int) -> str:
    return f"{', '.join(edits)} ({_gib(peak)} each)"


def _check_inference(
    ep: InferenceEndpoint, shape: ModelShape, itype: str, inst: Instance
) -> FitFinding | None:
    plan = plan_for_endpoint(ep, shape)
    runtime = ep.spec.runtime
    if runtime == "vllm":  # vLLM starts when one full-length sequence fits; batches shrink to fit
        plan = replace(plan, batch_size=1)
    need, have = inference_memory(shape, plan).peak, usable_bytes(inst, runtime)
    if need <= have:
        return None
    tips = []
    if plan.quantization == "none":
        q = "fp8" if runtime == "vllm" else "int8"
        if inference_memory(shape, replace(plan, quantization=q)).peak <= have:
            tips.append(f"quantization: {q}")
    if plan.devices < inst.devices:
        more = replace(plan, devices=inst.devices)
        if inference_memory(shape, more).peak <= have:
            tips.append(f"acceleratorsPerReplica: {inst.devices}")
    if plan.batch_size > 1:
        for b in (plan.batch_size // 2, plan.batch_size // 4, 1):
            if b >= 1 and inference_memory(shape, replace(plan, batch_size=b)).peak <= have:
                tips.append(f"maxBatchSize: {b}")
                break
    bigger = _bigger_instance(inference_memory(shape, plan).peak, inst, runtime)
    if bigger:
        tips.append(f"instance type {bigger}")
    return FitFinding("InferenceEndpoint", ep.metadata.name, itype, need, have, tips)


def plan_for_endpoint(ep: InferenceEndpoint, shape: ModelShape) -> InferencePlan:
    server = ep.spec.server
    dtype = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(server.dtype)
    if dtype is None:  # auto: bf16 on accelerators, fp32 on CPU (what both runtimes choose)
        dtype = "fp32" if ep.spec.resources.accelerator == "cpu" else "bf16"
    quant = {"int8": "int8", "fp8": "fp8", "awq": "int4", "gptq": "int4", "bitsandbytes": "int8"}.get(
        server.quantization, "none"
    )
    return InferencePlan(
        batch_size=server.max_batch_size,
        context=server.max_model_len or shape.max_position_embeddings,
        dtype=dtype,
        quantization=quant,
        devices=ep.spec.resources.accelerators_per_replica,
        runtime=ep.spec.runtime,
    )


def _fewest_nodes(shape: ModelShape, plan: TrainingPlan, itype: str, have: int) -> int | None:
    procs = INSTANCES[itype].devices * training_processes(itype)
    for n in range(1, 129):
        if training_memory(shape, replace(plan, world_size=n * procs)).peak <= have:
            return n
    return None


def _bigger_instance(need: int, current: Instance, runtime: str = "llmops") -> str | None:
    """The cheapest listed instance type of the same accelerator with more memory per device that fits."""

    def have(t: str) -> int:
        return usable_bytes(INSTANCES[t], runtime) if runtime == "vllm" else usable_per_process(t)

    fits = [
        t
        for t, i in INSTANCES.items()
        if i.accelerator == current.accelerator
        and i.device_memory_gib > current.device_memory_gib
        and need <= have(t)
    ]
    return min(fits, key=lambda t: ON_DEMAND_USD_PER_HOUR.get(t) or math.inf) if fits else None


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


__all__ = [
    "AS_OF", "EstimateError", "FitFinding", "InferenceMemory", "InferencePlan", "LoraPlan", "ModelShape",
    "Option", "TrainingMemory", "TrainingPlan", "check_fit", "inference_memory", "inference_options",
    "kv_cache_bytes", "load_model_shape", "plan_for_endpoint", "plan_for_job", "run_tokens", "shape_for",
    "training_memory", "training_options",
]  # fmt: skip
