"""Shared helpers: write a TrainingJob manifest and run the trainer as a subprocess, as a pod would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "training-jobs" / "llmops_train" / "data" / "corpus.txt"


def write_job(path: Path, **overrides: Any) -> Path:
    """A tiny CPU pre-training job; ``overrides`` replace whole spec sections (``hyperparameters`` merges)."""
    spec: dict[str, Any] = {
        "model": {"preset": "tiny"},
        "data": {"train": str(CORPUS)},
        "hyperparameters": {
            "maxSteps": 20,
            "batchSize": 8,
            "sequenceLength": 64,
            "learningRate": 0.003,
            "warmupSteps": 4,
            "precision": "fp32",
            "evalInterval": 10,
            "evalBatches": 4,
            "seed": 7,
        },
        "resources": {"accelerator": "cpu"},
        "checkpoint": {"interval": 5, "keep": 2},
        "output": {"location": "pvc://out/model"},
    }
    spec["hyperparameters"].update(overrides.pop("hyperparameters", {}))
    spec.update(overrides)
    doc = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def env(tmp: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "KUBERNETES_"))}
    return base | {
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("cli", "operator", "training-jobs")),
        "OMP_NUM_THREADS": "1",
        "LLMOPS_PVC_ROOT": str(tmp / "pvc"),
        "LLMOPS_CHECKPOINT_DIR": str(tmp / "ckpt"),
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def run_probe(script: Path, *args: str, env: dict[str, str], world: int = 2) -> subprocess.CompletedProcess:
    """A probe script under torchrun on ``world`` CPU processes, each rank's output prefixed (--tee)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world)]
    return subprocess.run(
        [*cmd, "--tee", "1", str(script), *args], env=env, capture_output=True, text=True, timeout=300
    )


def command(job: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "llmops_train", "--job", str(job), "--device", "cpu", *args]


def train(
    tmp: Path, job: Path, *args: str, timeout: float = 240, **extra: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(job, *args), env=env(tmp, **extra), capture_output=True, text=True, timeout=timeout, cwd=tmp
    )


def metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(path: Path) -> dict[int, float]:
    """step -> loss; a resumed run's later lines win (they are what the final state came from)."""
    return {r["step"]: r["loss"] for r in metrics(path) if "loss" in r}
