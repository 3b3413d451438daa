"""Pod-level decisions both kinds share: labels, accelerator resources, placement, claim mounts.

:func:`shared` gathers them into the context of the partial templates both kinds include.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmops_core.api.common import EnvVar, Toleration
from llmops_core.api.hardware import EFA_RESOURCE, RESOURCE_NAMES
from llmops_core.api.inference import InferenceScheduling
from llmops_core.api.training import TrainingScheduling
from llmops_core.storage import parse

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Taints on accelerator nodes differ between blueprints (key only, or key=true); Exists covers both.
ACCELERATOR_TOLERATIONS = {
    "nvidia-gpu": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "aws-trainium": [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}],
    "aws-inferentia": [{"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}],
    "cpu": [],
}
PART_OF = "llmops"
MANAGED_BY = "llmops-operator"


def labels(kind: str, name: str, app: str, component: str) -> dict[str, str]:
    """Standard app.kubernetes.io labels plus ours, which the operator's child watches select on."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        f"llmops.dev/{kind.lower()}": name,
    }


def metadata(name: str, namespace: str | None, labels: dict[str, str]) -> dict[str, Any]:
    """A child's metadata; no namespace when rendering a manifest that names none (``llmops render``)."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = labels
    return meta


def tolerations(accelerator: str, extra: Iterable[Toleration]) -> list[dict[str, Any]]:
    user = [t.model_dump(by_alias=True, exclude_none=True) for t in extra]
    return ACCELERATOR_TOLERATIONS[accelerator] + [
        t for t in user if t not in ACCELERATOR_TOLERATIONS[accelerator]
    ]


def affinity(instance_types: list[str], pod_anti_affinity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod's whole affinity: optional anti-affinity, and the instance types as node affinity."""
    out: dict[str, Any] = {}
    if pod_anti_affinity:
        out["podAntiAffinity"] = pod_anti_affinity
    if instance_types:
        term = {
            "matchExpressions": [{"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": instance_types}]
        }
        out["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}
        }
    return out


def resources(
    accelerator: str, devices: int, cpu: Any, memory: Any, efa: int = 0
) -> dict[str, dict[str, Any]]:
    """Requests and limits; device resources must have requests equal to limits."""
    requests: dict[str, Any] = {"cpu": str(cpu), "memory": str(memory)}
    limits: dict[str, Any] = {"memory": str(memory)}
    if accelerator != "cpu":
        requests[RESOURCE_NAMES[accelerator]] = limits[RESOURCE_NAMES[accelerator]] = devices
    if efa:
        requests[EFA_RESOURCE] = limits[EFA_RESOURCE] = efa
    return {"requests": requests, "limits": limits}


def env(values: dict[str, str | int | None], user: Iterable[EnvVar] = ()) -> list[dict[str, Any]]:
    """Our variables first (unset ones dropped), then the user's, which may not override ours."""
    ours = [{"name": k, "value": str(v)} for k, v in values.items() if v is not None]
    taken = {e["name"] for e in ours}
    return ours + [e.model_dump(by_alias=True, exclude_none=True) for e in user if e.name not in taken]


def claims(uris: Iterable[str | None]) -> list[str]:
    """The PersistentVolumeClaims named by pvc:// URIs, each once, in first-seen order."""
    seen: dict[str, None] = {}
    for uri in uris:
        if uri and uri.startswith("pvc://"):
            seen.setdefault(parse(uri).bucket)
    return list(seen)


def claim_volumes(names: Iterable[str], pvc_root: str, read_only: bool) -> tuple[list[dict], list[dict]]:
    """Volumes and mounts that put each claim at ``<pvc_root>/<claim>``, where llmops_core.storage looks."""
    names = list(names)
    volumes = [{"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": n}} for i, n in enumerate(names)]
    mounts = [
        {"name": f"pvc-{i}", "mountPath": f"{pvc_root}/{n}", "readOnly": read_only}
        for i, n in enumerate(names)
    ]
    return volumes, mounts


def shared(
    *,
    service_account: str | None,
    scheduling: TrainingScheduling | InferenceScheduling,
    accelerator: str,
    shm_size: Any,
    claim_volumes: list[dict[str, Any]],
    claim_mounts: list[dict[str, Any]],
    affinity: dict[str, Any],
) -> dict[str, Any]:
    """The context of ``_pod.j2``, ``_volumes.j2`` and ``_mounts.j2``, which both kinds include."""
    return {
        "service_account": service_account,
        "priority_class": scheduling.priority_class_name,
        "affinity": affinity,
        "node_selector": scheduling.node_selector,
        "tolerations": tolerations(accelerator, scheduling.tolerations),
        "shm_size": str(shm_size),
        "claim_volumes": claim_volumes,
        "claim_mounts": claim_mounts,
    }
