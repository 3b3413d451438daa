"""Every object name derived from a resource's name, defined once.

The renderer names children with these functions, and validation caps a resource's name so that the
longest derived name (ours, and the per-replica Pods and Services Kubeflow creates as
``<job>-<role>-<index>``) stays a 63-character DNS label.
"""

from __future__ import annotations

from .training import MAX_NODES

LABEL_MAX = 63
TRAINING_SUFFIXES = {
    "pytorchjob": "",
    "config": "-config",
    "progress": "-progress",
    "role": "-progress-writer",
    "service_account": "-trainer",
    "checkpoints": "-checkpoints",
}
ENDPOINT_SUFFIXES = {"deployment": "", "service": "", "autoscaler": "", "disruption_budget": ""}
# Kubeflow numbers replicas from 0; one node is the Master, so Workers end at MAX_NODES - 2.
KUBEFLOW_SUFFIXES = ("-master-0", f"-worker-{MAX_NODES - 2}")


def training_names(job: str) -> dict[str, str]:
    """The name of each child of TrainingJob ``job``."""
    return {child: job + suffix for child, suffix in TRAINING_SUFFIXES.items()}


def endpoint_names(endpoint: str) -> dict[str, str]:
    """The name of each child of InferenceEndpoint ``endpoint``."""
    return {child: endpoint + suffix for child, suffix in ENDPOINT_SUFFIXES.items()}


MAX_NAME = {
    "TrainingJob": LABEL_MAX - max(map(len, [*TRAINING_SUFFIXES.values(), *KUBEFLOW_SUFFIXES])),
    "InferenceEndpoint": LABEL_MAX - max(map(len, ENDPOINT_SUFFIXES.values())),
}
