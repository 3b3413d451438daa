"""The InferenceEndpoint resource: which model to serve, with which runtime, on what, how many."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..serving import Dtype, default
from .common import (
    API_VERSION,
    ApiModel,
    Condition,
    EnvVar,
    IntOrPercent,
    KeyRef,
    ObjectMeta,
    Quantity,
    Rule,
    Toleration,
)

# Quantization each runtime understands: ours does dynamic int8 on CPU; vLLM takes its own methods.
QUANTIZATION = {"llmops": {"none", "int8"}, "vllm": {"none", "awq", "gptq", "fp8", "bitsandbytes"}}


class ModelSource(ApiModel):
    RULES = (
        Rule(
            "has(self.location) != has(self.fromTrainingJob)",
            "set exactly one of location or fromTrainingJob",
            lambda m: (m.location is None) != (m.from_training_job is None),
        ),
    )

    location: str | None = Field(
        None, description="Hugging Face model directory: s3://, pvc://claim/path or a path."
    )
    from_training_job: str | None = Field(
        None, description="Serve the output of this TrainingJob (same namespace) once it has succeeded."
    )
    name: str | None = Field(None, description="Model id clients send; defaults to the endpoint's name.")


class InferenceResources(ApiModel):
    accelerator: Literal["nvidia-gpu", "aws-inferentia", "cpu"] = "cpu"
    accelerators_per_replica: int = Field(
        1,
        ge=1,
        le=64,
        description="GPUs or Neuron devices per replica; vLLM uses them for tensor parallelism.",
    )
    instance_types: list[str] = Field(default_factory=list)
    cpu: Quantity | None = None
    memory: Quantity | None = None
    shm_size: Quantity = Field("2Gi", description="Size limit of the memory-backed /dev/shm.")
    model_volume_size: Quantity | None = Field(
        None,
        description="Runtime vllm with an s3:// model: size limit of the volume it is downloaded into "
        "(also requested as ephemeral storage); the operator's default when unset.",
    )


REPLICAS_DEFAULT = 1
_MIN = f"(has(self.min) ? self.min : {REPLICAS_DEFAULT})"


class Replicas(ApiModel):
    """Bounds for the HorizontalPodAutoscaler; min is also the scale subresource's replicas.
    Without max, the endpoint has a fixed size of min replicas."""

    RULES = (
        Rule(
            f"{_MIN} >= 1",
            "min must be at least 1: scaling to zero is not supported "
            "(a HorizontalPodAutoscaler cannot scale below one replica)",
            lambda r: r.min >= 1,
        ),
        Rule(
            f"!has(self.max) || {_MIN} <= self.max",
            "min must not exceed max",
            lambda r: r.max is None or r.min <= r.max,
        ),
    )

    min: int = Field(REPLICAS_DEFAULT, le=1000)
    max: int | None = Field(None, ge=1, le=1000, description="Upper bound for the HPA; default: min.")

    @property
    def upper(self) -> int:
        return self.min if self.max is None else self.max


class Autoscaling(ApiModel):
    metric: Literal["cpu", "requestsInFlight"] = Field(
        "cpu", description="cpu: average CPU utilisation; requestsInFlight: a per-pod Pods metric."
    )
    target_cpu_utilization: int = Field(80, ge=1, le=100)
    target_requests_per_pod: int = Field(
        8, ge=1, description="Average of podsMetric per pod the HPA aims at."
    )
    pods_metric: str = Field(
        "vllm:num_requests_running",
        min_length=1,
        description="Custom-metrics name (e.g. from prometheus-adapter) both runtimes export.",
    )
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600)


class ServerOptions(ApiModel):
    max_batch_size: int = Field(default("max_batch_size"), ge=1, le=1024)
    max_queue: int = Field(default("max_queue"), ge=0, le=100000)
    max_model_len: int | None = Field(None, ge=16)
    quantization: str = Field("none", description="llmops: none|int8; vllm: none|awq|gptq|fp8|bitsandbytes.")
    dtype: Dtype = "auto"
    api_key_secret: KeyRef | None = Field(
        None, description="Secret key holding accepted API keys, one per line."
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Extra command-line flags for the runtime."
    )


class InferenceScheduling(ApiModel):
    anti_affinity: Literal["preferred", "required"] = "preferred"
    zone_spread: Literal["preferred", "required", "none"] = "preferred"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None


class DisruptionBudget(ApiModel):
    RULES = (
        Rule(
            "!(has(self.minAvailable) && has(self.maxUnavailable))",
            "set one of minAvailable or maxUnavailable",
            lambda b: b.min_available is None or b.max_unavailable is None,
        ),
    )

    enabled: bool = Field(True, description="Rendered only when replicas.min is at least 2.")
    max_unavailable: IntOrPercent | None = None
    min_available: IntOrPercent | None = None


class InferenceEndpointSpec(ApiModel):
    model: ModelSource
    runtime: Literal["llmops", "vllm"] = "llmops"
    image: str | None = Field(
        None, description="Server image; the operator's default for the runtime when unset."
    )
    resources: InferenceResources = Field(default_factory=InferenceResources)
    replicas: Replicas = Field(default_factory=Replicas)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    server: ServerOptions = Field(default_factory=ServerOptions)
    scheduling: InferenceScheduling = Field(default_factory=InferenceScheduling)
    disruption_budget: DisruptionBudget = Field(default_factory=DisruptionBudget)
    env: list[EnvVar] = Field(default_factory=list)
    service_account_name: str | None = None


class InferenceEndpointStatus(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    observed_generation: int | None = None
    phase: str | None = Field(
        None, description="Pending, WaitingForModel, Progressing, Ready, Degraded or Invalid."
    )
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int | None = None
    ready_replicas: int | None = None
    url: str | None = None
    selector: str | None = Field(None, description="Label selector for the scale subresource.")
    model: str | None = Field(None, description="The model location being served.")


class InferenceEndpoint(ApiModel):
    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["llmops.dev/v1alpha1"] = API_VERSION
    kind: Literal["InferenceEndpoint"] = "InferenceEndpoint"
    metadata: ObjectMeta
    spec: InferenceEndpointSpec
    status: InferenceEndpointStatus | None = None
