"""Checks the schema cannot express: hardware that exists, names that fit, URIs that parse.

Each problem is an :class:`Issue` naming the field path as a user writes it (``spec.resources.
instanceTypes[0]``) and the fix, so the CLI, the operator's ``Stalled`` condition and tests all
report the same words.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..storage import parse as parse_location
from .common import DNS1035, LABEL_VALUE
from .hardware import EFA_RESOURCE, INSTANCES, family_accelerator, neuroncores
from .inference import QUANTIZATION, InferenceEndpoint
from .names import MAX_NAME
from .presets import PRESETS
from .training import TrainingJob


@dataclass(frozen=True)
class Issue:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A resource that cannot be rendered; ``issues`` says where and why."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("; ".join(map(str, issues)))


def format_loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and (part in {"int", "str", "float", "bool"} or "[" in part):
            continue  # union member tags such as 'int' or 'function-after[...]' say nothing to a user
        else:
            path += f".{part}" if path else str(part)
    return path or "(document)"


def from_pydantic(err: ValidationError) -> list[Issue]:
    """One issue per field, in the user's camelCase, without pydantic's union noise."""
    seen: dict[str, str] = {}
    for e in err.errors(include_url=False):
        path = format_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `kubectl explain` or docs/api.md)"
        elif e["type"] == "finite_number":
            msg = f"is {'NaN' if e['input'] != e['input'] else e['input']}; must be a finite number"
        elif e["type"] == "literal_error" and "expected" in e.get("ctx", {}):
            msg = f"must be one of {e['ctx']['expected']}"
        seen.setdefault(path, msg)
    return [Issue(p, m) for p, m in seen.items()]


def _name_issues(kind: str, name: str) -> Iterator[Issue]:
    limit = MAX_NAME[kind]
    if not DNS1035.match(name):
        yield Issue(
            "metadata.name", "must be lower-case letters, digits and '-', starting with a letter (DNS-1035)"
        )
    if len(name) > limit:
        yield Issue(
            "metadata.name", f"is {len(name)} characters; at most {limit} so every derived object name fits"
        )


def _location_issues(path: str, uri: str | None) -> Iterator[Issue]:
    if uri is None:
        return
    try:
        loc = parse_location(uri)
    except ValueError as e:
        yield Issue(path, str(e))
        return
    if loc.scheme == "pvc" and not DNS1035.match(loc.bucket.replace(".", "-")[:63]):
        yield Issue(path, f"claim name {loc.bucket!r} is not a valid PersistentVolumeClaim name")


def _hardware_issues(
    path: str, accelerator: str, count_field: str, per_node: int, instance_types: list[str]
) -> Iterator[Issue]:
    for i, itype in enumerate(instance_types):
        field = f"{path}.instanceTypes[{i}]"
        if not LABEL_VALUE.match(itype) or "." not in itype:
            yield Issue(field, f"{itype!r} is not an EC2 instance type such as p5.48xlarge")
            continue
        carries = family_accelerator(itype)
        if carries != accelerator:
            yield Issue(
                field,
                f"{itype} carries {carries}, but {path}.accelerator is {accelerator}; "
                f"choose a {accelerator} instance type or change the accelerator",
            )
            continue
        known = INSTANCES.get(itype)
        if known and accelerator != "cpu" and per_node > known.devices:
            yield Issue(
                f"{path}.{count_field}",
                f"{per_node} exceeds the {known.devices} {accelerator} device(s) of {itype}",
            )


def training_issues(tj: TrainingJob) -> Iterator[Issue]:
    spec = tj.spec
    yield from _name_issues("TrainingJob", tj.metadata.name)
    res = spec.resources
    yield from _hardware_issues(
        "spec.resources",
        res.accelerator,
        "acceleratorsPerNode",
        res.accelerators_per_node,
        res.instance_types,
    )
    if res.accelerator == "aws-trainium" and len(neuroncores(res.instance_types)) > 1:
        yield Issue(
            "spec.resources.instanceTypes",
            "mixes Trainium generations with different NeuronCores per device (one process runs per "
            "core); list instance types of one generation",
        )
    if res.efa:
        if res.accelerator == "cpu":
            yield Issue("spec.resources.efa", "EFA needs an accelerator instance; set efa: false for cpu")
        elif res.efa_devices is None:
            known = [INSTANCES[t] for t in res.instance_types if t in INSTANCES]
            if not known:
                yield Issue(
                    "spec.resources.efaDevices",
                    "set it, or list instance types we know, to size the EFA request",
                )
            elif min(k.efa for k in known) == 0:
                yield Issue(
                    "spec.resources.efa", f"{', '.join(res.instance_types)} has no {EFA_RESOURCE} interfaces"
                )
    yield from _location_issues("spec.model.base", spec.model.base)
    yield from _location_issues("spec.data.train", spec.data.train)
    yield from _location_issues("spec.data.validation", spec.data.validation)
    yield from _location_issues("spec.output.location", spec.output.location)
    if "://" not in spec.output.location:
        yield Issue(
            "spec.output.location", "a local path is lost with the pod; use s3:// or pvc://claim/path"
        )
    claim = spec.checkpoint.volume_claim
    if claim is not None and claim.access_mode == "ReadWriteOnce" and res.nodes > 1:
        yield Issue(
            "spec.checkpoint.volumeClaim.accessMode",
            f"ReadWriteOnce cannot be mounted on {res.nodes} nodes; use ReadWriteMany (e.g. FSx for Lustre)",
        )
    if spec.checkpoint.s3 is not None:
        yield from _location_issues("spec.checkpoint.s3", spec.checkpoint.s3)
        if not spec.checkpoint.s3.startswith("s3://"):
            yield Issue("spec.checkpoint.s3", "must be an s3:// prefix")
    if spec.model.preset:
        limit = PRESETS[spec.model.preset].max_position_embeddings
        if spec.hyperparameters.sequence_length > limit:
            yield Issue(
                "spec.hyperparameters.sequenceLength",
                f"{spec.hyperparameters.sequence_length} exceeds preset {spec.model.preset}'s {limit} positions",
            )
    if res.accelerator == "aws-trainium" and not spec.image:
        yield Issue(
            "spec.image",
            "aws-trainium needs a Neuron-capable trainer image (torch-neuronx) in spec.image; "
            "the bundled trainer runs on CPUs and NVIDIA GPUs only",
        )
    if res.accelerator == "cpu" and spec.hyperparameters.precision == "fp16":
        yield Issue("spec.hyperparameters.precision", "fp16 needs a GPU; use bf16 or fp32 on cpu")
    k, world = spec.hyperparameters.context_parallel, res.nodes * res.processes_per_node
    if world % k:
        yield Issue(
            "spec.hyperparameters.contextParallel",
            f"{k} needs a world size (nodes x processes per node) divisible by it; this job has {world}",
        )


def inference_issues(ie: InferenceEndpoint) -> Iterator[Issue]:
    spec = ie.spec
    yield from _name_issues("InferenceEndpoint", ie.metadata.name)
    res = spec.resources
    yield from _hardware_issues(
        "spec.resources",
        res.accelerator,
        "acceleratorsPerReplica",
        res.accelerators_per_replica,
        res.instance_types,
    )
    yield from _location_issues("spec.model.location", spec.model.location)
    if spec.model.from_training_job is not None and not DNS1035.match(spec.model.from_training_job):
        yield Issue("spec.model.fromTrainingJob", "must name a TrainingJob (DNS-1035 name)")
    allowed = QUANTIZATION[spec.runtime]
    if spec.server.quantization not in allowed:
        yield Issue("spec.server.quantization", f"runtime {spec.runtime} supports {sorted(allowed)}")
    if spec.runtime == "llmops" and res.accelerator == "aws-inferentia":
        yield Issue("spec.runtime", "aws-inferentia needs runtime vllm with a Neuron image in spec.image")
    if res.accelerator == "aws-inferentia" and not spec.image:
        yield Issue(
            "spec.image",
            "aws-inferentia needs a vLLM Neuron image (e.g. a neuronx-distributed-inference build)",
        )
    if spec.runtime == "vllm" and res.accelerator == "cpu" and not spec.image:
        yield Issue(
            "spec.image", "the default vLLM image is CUDA-only; set a CPU vLLM image or use runtime llmops"
        )
    if spec.runtime == "llmops" and res.accelerators_per_replica > 1 and res.accelerator != "cpu":
        yield Issue(
            "spec.resources.acceleratorsPerReplica",
            "runtime llmops uses one device per replica; use runtime vllm for tensor parallelism",
        )


def validate(model: BaseModel) -> list[Issue]:
    if isinstance(model, TrainingJob):
        return list(training_issues(model))
    if isinstance(model, InferenceEndpoint):
        return list(inference_issues(model))
    raise TypeError(f"not an llmops resource: {type(model).__name__}")
