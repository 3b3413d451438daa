"""Turn a TrainingJob manifest plus the pod's environment and CLI overrides into one resolved run config.

The manifest is parsed with ``llmops_core.api.load`` so the trainer and the operator agree on every
field and default; nothing here re-validates what the API already checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from llmops_core.api import SpecError, TrainingJob, load
from llmops_core.api.training import Hyperparameters, TrainingJobSpec


class InputError(Exception):
    """Bad input (manifest, data, model, device): reported as one line, before any heavy work."""


@dataclass(frozen=True)
class RunConfig:
    job: TrainingJob
    checkpoint_dir: Path
    output: str  # URI or directory of the exported model
    cache_dir: Path | None
    metrics_file: Path
    device: str  # "cpu" or "cuda"
    max_steps: int | None  # the CLI override, else the spec's
    progress_configmap: str | None
    namespace: str

    @property
    def spec(self) -> TrainingJobSpec:
        return self.job.spec

    @property
    def hp(self) -> Hyperparameters:
        return self.job.spec.hyperparameters


def read_job(path: Path) -> TrainingJob:
    """Load the manifest; a SpecError's issues become one line naming each problem."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"job manifest {path} not found") from None
    except yaml.YAMLError as e:
        raise InputError(f"job manifest {path} is not valid YAML: {e}".replace("\n", " ")) from None
    try:
        job = load(doc)
    except SpecError as e:
        raise InputError(f"invalid job manifest {path}: " + "; ".join(str(i) for i in e.issues)) from None
    if not isinstance(job, TrainingJob):
        raise InputError(f"{path} is a {job.kind}, not a TrainingJob")
    return job


NO_NEURON = (
    "the bundled trainer runs on CPUs and NVIDIA GPUs only (no XLA/Neuron device); for Trainium, set "
    "spec.image to a Neuron-capable trainer image that provides the same entrypoint (docs/train.md)"
)


def pick_device(requested: str, accelerator: str, cuda_available: bool) -> str:
    """``auto`` follows the spec's accelerator; asking for a device that is absent, or one this trainer
    has no code for (XLA/Neuron), is an input error."""
    if requested == "xla" or (requested == "auto" and accelerator == "aws-trainium"):
        raise InputError(
            f"{'--device xla' if requested == 'xla' else 'accelerator aws-trainium'}: {NO_NEURON}"
        )
    if requested == "auto":
        requested = "cpu" if accelerator == "cpu" else "cuda"
    if requested == "cuda" and not cuda_available:
        raise InputError(
            "a CUDA GPU was requested (spec.resources.accelerator or --device) but torch sees none; "
            "use accelerator: cpu or --device cpu"
        )
    return requested


def resolve(
    job: TrainingJob,
    *,
    output: str | None = None,
    checkpoint_dir: str | None = None,
    max_steps: int | None = None,
    device: str = "auto",
    cuda_available: bool = False,
) -> RunConfig:
    env = os.environ
    ckpt = Path(checkpoint_dir or env.get("LLMOPS_CHECKPOINT_DIR", "/checkpoints"))
    return RunConfig(
        job=job,
        checkpoint_dir=ckpt,
        output=output or job.spec.output.location,
        cache_dir=Path(env["LLMOPS_CACHE_DIR"]) if env.get("LLMOPS_CACHE_DIR") else None,
        metrics_file=Path(env.get("LLMOPS_METRICS_FILE") or ckpt / "metrics.jsonl"),
        device=pick_device(device, job.spec.resources.accelerator, cuda_available),
        max_steps=max_steps or job.spec.hyperparameters.max_steps,
        progress_configmap=env.get("LLMOPS_PROGRESS_CONFIGMAP") or None,
        namespace=env.get("LLMOPS_NAMESPACE") or job.metadata.namespace or "default",
    )
