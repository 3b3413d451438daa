"""The TrainingJob resource: what to train, on what data, on which hardware, and where results go."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    API_VERSION,
    IMMUTABLE,
    ApiModel,
    Condition,
    EnvVar,
    ObjectMeta,
    Quantity,
    Rule,
    Toleration,
)
from .hardware import DEFAULT_NEURONCORES, neuroncores
from .presets import PRESETS

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]

MAX_NODES = 1000


class LoraSpec(ApiModel):
    """Low-rank adapters (peft) instead of full fine-tuning."""

    rank: int = Field(8, ge=1, le=1024)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=list, description="Empty means peft's default for the model."
    )


class ModelSpec(ApiModel):
    """A preset architecture trained from scratch, or a base model to fine-tune."""

    RULES = (
        Rule(
            "has(self.preset) != has(self.base)",
            "set exactly one of preset or base (preset pre-trains from scratch, base fine-tunes)",
            lambda m: (m.preset is None) != (m.base is None),
        ),
        Rule(
            "!has(self.lora) || has(self.base)",
            "lora needs a base model to adapt; remove lora or set base",
            lambda m: m.lora is None or m.base is not None,
        ),
        IMMUTABLE,
    )

    preset: PresetName | None = Field(None, description="Architecture to pre-train from scratch.")
    base: str | None = Field(
        None, description="Hugging Face model directory: s3://, pvc://claim/path or a path."
    )
    lora: LoraSpec | None = None


class DataSpec(ApiModel):
    RULES = (IMMUTABLE,)

    train: str = Field(
        min_length=1, description="File or directory/prefix: s3://, pvc://claim/path or a path."
    )
    validation: str | None = None
    format: Literal["text", "jsonl"] = "text"
    text_field: str = Field("text", min_length=1, description="The JSONL field that holds the text.")
    validation_split: float = Field(
        0.05, ge=0, lt=1, description="Fraction held out for evaluation when no validation set is given."
    )


class EarlyStopping(ApiModel):
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0)


DEFAULT_SEQUENCE_LENGTH = 512


class Hyperparameters(ApiModel):
    RULES = (
        Rule(
            "!has(self.contextParallel) || self.contextParallel == 1 || "
            f"(has(self.sequenceLength) ? self.sequenceLength : {DEFAULT_SEQUENCE_LENGTH})"
            " % (2 * self.contextParallel) == 0",
            "contextParallel K needs sequenceLength divisible by 2K: each rank takes a chunk from each "
            "end of every sequence, for balanced causal attention",
            lambda h: h.context_parallel == 1 or h.sequence_length % (2 * h.context_parallel) == 0,
        ),
        IMMUTABLE,
    )

    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps; training stops at whichever limit comes first."
    )
    epochs: float | None = Field(None, gt=0)
    max_seconds: int | None = Field(
        None, ge=1, description="Wall-clock budget; a checkpoint is written on stopping."
    )
    batch_size: int = Field(8, ge=1, le=4096, description="Sequences per device per micro-step.")
    gradient_accumulation: int = Field(1, ge=1, le=1024)
    learning_rate: float = Field(3e-4, gt=0, le=1)
    min_learning_rate_ratio: float = Field(
        0.1, ge=0, le=1, description="Cosine floor as a fraction of learningRate."
    )
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="Max gradient norm; 0 disables clipping.")
    sequence_length: int = Field(DEFAULT_SEQUENCE_LENGTH, ge=8, le=131072)
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    activation_checkpointing: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"
    context_parallel: int = Field(
        1,
        ge=1,
        le=64,
        description="Ranks each sequence is split across (ring attention); DDP/FSDP run over world/K groups.",
    )
    compile: bool = False
    seed: int = Field(1234, ge=0)
    eval_interval: int = Field(200, ge=1, description="Steps between evaluations.")
    eval_batches: int = Field(20, ge=1)
    early_stopping: EarlyStopping | None = None


class Resources(ApiModel):
    RULES = (IMMUTABLE,)

    accelerator: Literal["nvidia-gpu", "aws-trainium", "cpu"] = "nvidia-gpu"
    accelerators_per_node: int = Field(
        1, ge=1, le=64, description="GPUs or Neuron devices per node; for cpu, training processes per node."
    )
    nodes: int = Field(1, ge=1, le=MAX_NODES)
    instance_types: list[str] = Field(
        default_factory=list, description="node.kubernetes.io/instance-type values."
    )
    cpu: Quantity | None = None
    memory: Quantity | None = None
    efa: bool = Field(
        False, description="Attach the instance's EFA interfaces and set the NCCL/libfabric env."
    )
    efa_devices: int | None = Field(
        None, ge=1, le=64, description="EFA interfaces per node; default: all the instance has."
    )
    shm_size: Quantity = Field("16Gi", description="Size limit of the memory-backed /dev/shm.")

    @property
    def processes_per_node(self) -> int:
        """Training processes per node (torchrun's nproc-per-node): one per device, but one per
        NeuronCore on Trainium, as torch-neuronx runs them (a trn1.32xlarge's 16 devices: 32)."""
        if self.accelerator != "aws-trainium":
            return self.accelerators_per_node
        return self.accelerators_per_node * max(neuroncores(self.instance_types) or {DEFAULT_NEURONCORES})


class VolumeClaim(ApiModel):
    size: Quantity
    storage_class_name: str | None = None
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteMany"


class CheckpointSpec(ApiModel):
    """Where checkpoints go: a claim the operator creates, an existing claim, or an S3 prefix (or none: scratch)."""

    RULES = (
        Rule(
            "!(has(self.volumeClaim) && has(self.existingClaim))",
            "set at most one of volumeClaim or existingClaim",
            lambda c: c.volume_claim is None or c.existing_claim is None,
        ),
        IMMUTABLE,
    )

    volume_claim: VolumeClaim | None = Field(
        None, description="A PersistentVolumeClaim for the operator to create."
    )
    existing_claim: str | None = Field(None, min_length=1, max_length=253)
    s3: str | None = Field(None, description="s3:// prefix; a mirror of each checkpoint, or the only store.")
    interval: int = Field(
        500, ge=1, description="Steps between checkpoints (one is also written on SIGTERM)."
    )
    keep: int = Field(3, ge=1, le=100, description="How many recent checkpoints to keep.")


class OutputSpec(ApiModel):
    RULES = (IMMUTABLE,)

    location: str = Field(
        min_length=1, description="Where the final Hugging Face model goes: s3://, pvc://claim/path."
    )


class TrainingScheduling(ApiModel):
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list, description="Added to the accelerator's own.")
    priority_class_name: str | None = None
    gang_scheduler: Literal["none", "volcano"] = Field(
        "none", description="volcano: all pods start together."
    )
    queue: str | None = Field(None, description="Kueue LocalQueue name (label kueue.x-k8s.io/queue-name).")


class RunPolicy(ApiModel):
    backoff_limit: int = Field(
        3,
        ge=0,
        le=100,
        description="Retries after a retryable failure (preemption, OOM: exit codes 128-255); "
        "past it the operator stops the job as Failed. Exit codes 1-127 fail it at once.",
    )
    active_deadline_seconds: int | None = Field(None, ge=1)
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    suspend: bool = False


class TrainingJobSpec(ApiModel):
    image: str | None = Field(None, description="Trainer image; the operator's default when unset.")
    model: ModelSpec
    data: DataSpec
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    resources: Resources = Field(default_factory=Resources)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    output: OutputSpec
    scheduling: TrainingScheduling = Field(default_factory=TrainingScheduling)
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    env: list[EnvVar] = Field(default_factory=list)
    service_account_name: str | None = Field(
        None, description="Pods' service account; by default the operator creates <name>-trainer."
    )


class Progress(ApiModel):
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    eta: str | None = Field(None, description="Estimated time left, e.g. 1h12m.")
    last_checkpoint: str | None = None
    updated_at: str | None = None
    summary: str | None = Field(None, description="step/totalSteps, for kubectl get.")


class ChildRef(ApiModel):
    api_version: str
    kind: str
    name: str


class Retry(ApiModel):
    """One retryable failure of a training pod (the pod was replaced and training resumed)."""

    pod: str
    uid: str | None = None
    exit_code: int | None = None
    reason: str | None = Field(None, description="e.g. OOMKilled, Error, or the trainer's own reason.")
    time: str | None = None


class TrainingJobStatus(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    observed_generation: int | None = None
    phase: str | None = Field(None, description="Pending, Running, Suspended, Succeeded, Failed or Invalid.")
    shape: str | None = Field(None, description="nodes x accelerators, e.g. 2x8 nvidia-gpu.")
    conditions: list[Condition] = Field(default_factory=list)
    progress: Progress | None = None
    children: list[ChildRef] = Field(default_factory=list)
    output_location: str | None = None
    start_time: str | None = Field(
        None,
        description="When the job began running (its PyTorchJob's Running condition), not when it was accepted.",
    )
    completion_time: str | None = None
    retries: list[Retry] = Field(
        default_factory=list, description="Retryable pod failures so far, oldest first."
    )


class TrainingJob(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["llmops.dev/v1alpha1"] = API_VERSION
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: ObjectMeta
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
