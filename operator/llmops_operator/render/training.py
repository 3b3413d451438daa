"""TrainingJob → ServiceAccount, ConfigMaps, progress RBAC, checkpoint claim, PyTorchJob.

Decisions live here; ``templates/training/*.j2`` hold the YAML shape. Children come back in the
order they should be created (identity and config before the job that uses them).
"""

from __future__ import annotations

from typing import Any

import yaml

from llmops_core.api.hardware import INSTANCES
from llmops_core.api.names import training_names as names
from llmops_core.api.training import TrainingJob
from llmops_core.config import OperatorConfig

from . import pods
from .engine import render_template

CONFIG_DIR = "/etc/llmops"
JOB_FILE = f"{CONFIG_DIR}/job.yaml"
CHECKPOINT_DIR = "/checkpoints"
# Time for the trainer's SIGTERM checkpoint before the kubelet kills it: drains honour it in full;
# a spot interruption gives two minutes whatever the pod asks.
GRACE_SECONDS = 300
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1", "NCCL_DEBUG": "WARN"}


def job_manifest(tj: TrainingJob) -> str:
    """The manifest the trainer reads: the validated spec with every default filled in."""
    doc = {
        "apiVersion": tj.api_version,
        "kind": tj.kind,
        "metadata": {"name": tj.metadata.name, "namespace": tj.metadata.namespace},
        "spec": tj.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }
    return yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def efa_devices(tj: TrainingJob) -> int:
    res = tj.spec.resources
    if not res.efa:
        return 0
    if res.efa_devices is not None:
        return res.efa_devices
    return min(INSTANCES[t].efa for t in res.instance_types if t in INSTANCES)


def _pod(
    tj: TrainingJob, config: OperatorConfig, n: dict[str, str], labels: dict[str, str]
) -> dict[str, Any]:
    """The context of the pod Master and Worker share."""
    spec, res = tj.spec, tj.spec.resources
    checkpoint_claim = n["checkpoints"] if spec.checkpoint.volume_claim else spec.checkpoint.existing_claim
    mounted = pods.claims([spec.model.base, spec.data.train, spec.data.validation, spec.output.location])
    claim_vols, claim_mounts = pods.claim_volumes(
        [c for c in mounted if c != checkpoint_claim], config.pvc_root, read_only=False
    )
    if checkpoint_claim:  # reachable both as the checkpoint dir and as pvc://<claim>/… for outputs
        claim_mounts.append({"name": "checkpoints", "mountPath": f"{config.pvc_root}/{checkpoint_claim}"})
    ours = {
        "LLMOPS_CHECKPOINT_DIR": CHECKPOINT_DIR,
        "LLMOPS_CACHE_DIR": "/cache",
        "LLMOPS_PVC_ROOT": config.pvc_root,
        "LLMOPS_PROGRESS_CONFIGMAP": n["progress"],
        "HOME": "/tmp",
        **(EFA_ENV if res.efa else {}),
    }
    return {
        **pods.shared(
            service_account=spec.service_account_name or n["service_account"],
            scheduling=spec.scheduling,
            accelerator=res.accelerator,
            shm_size=res.shm_size,
            claim_volumes=claim_vols,
            claim_mounts=claim_mounts,
            affinity=pods.affinity(res.instance_types),
        ),
        "pod_labels": labels,
        "image": spec.image or config.trainer_image,
        "pull_policy": config.image_pull_policy,
        "args": ["--job", JOB_FILE],
        "grace_seconds": GRACE_SECONDS,
        "env": pods.env(ours, spec.env),
        "resources": pods.resources(
            res.accelerator,
            res.accelerators_per_node,
            res.cpu or config.trainer_cpu,
            res.memory or config.trainer_memory,
            efa_devices(tj),
        ),
        "config_map": n["config"],
        "checkpoint_claim": checkpoint_claim,
    }


def _run_policy(tj: TrainingJob) -> dict[str, Any]:
    rp, sched = tj.spec.run_policy, tj.spec.scheduling
    policy: dict[str, Any] = {"backoffLimit": rp.backoff_limit, "cleanPodPolicy": "Running"}
    if rp.active_deadline_seconds is not None:
        policy["activeDeadlineSeconds"] = rp.active_deadline_seconds
    if rp.ttl_seconds_after_finished is not None:
        policy["ttlSecondsAfterFinished"] = rp.ttl_seconds_after_finished
    # Kueue admits a job by flipping runPolicy.suspend; owning that field would fight it.
    if sched.queue is None or rp.suspend:
        policy["suspend"] = rp.suspend
    if sched.gang_scheduler == "volcano":
        policy["schedulingPolicy"] = {"minAvailable": tj.spec.resources.nodes}
        if sched.priority_class_name:
            policy["schedulingPolicy"]["priorityClass"] = sched.priority_class_name
    return policy


def render_training_job(tj: TrainingJob, config: OperatorConfig) -> list[dict[str, Any]]:
    spec, ns = tj.spec, tj.metadata.namespace
    n = names(tj.metadata.name)
    labels = pods.labels(tj.kind, tj.metadata.name, "llmops-trainer", "training")
    service_account = spec.service_account_name or n["service_account"]
    objects: list[dict[str, Any]] = []
    if spec.service_account_name is None:
        objects.append(
            render_template(
                "training/serviceaccount.yaml.j2", metadata=pods.metadata(service_account, ns, labels)
            )
        )
    objects += [
        render_template(
            "training/configmap-job.yaml.j2",
            metadata=pods.metadata(n["config"], ns, labels),
            job_yaml=job_manifest(tj),
        ),
        render_template(
            "training/configmap-progress.yaml.j2", metadata=pods.metadata(n["progress"], ns, labels)
        ),
        render_template(
            "training/role.yaml.j2", metadata=pods.metadata(n["role"], ns, labels), configmap=n["progress"]
        ),
        render_template(
            "training/rolebinding.yaml.j2",
            metadata=pods.metadata(n["role"], ns, labels),
            role=n["role"],
            service_account=service_account,
            namespace=ns,
        ),
    ]
    claim = spec.checkpoint.volume_claim
    if claim is not None:
        objects.append(
            render_template(
                "training/pvc.yaml.j2",
                metadata=pods.metadata(n["checkpoints"], ns, labels),
                size=str(claim.size),
                access_mode=claim.access_mode,
                storage_class=claim.storage_class_name or config.storage_class,
            )
        )
    job_labels = dict(labels)
    if spec.scheduling.queue:
        job_labels["kueue.x-k8s.io/queue-name"] = spec.scheduling.queue
    objects.append(
        render_template(
            "training/pytorchjob.yaml.j2",
            metadata=pods.metadata(n["pytorchjob"], ns, job_labels),
            nproc_per_node=str(spec.resources.processes_per_node),
            run_policy=_run_policy(tj),
            workers=spec.resources.nodes - 1,
            **_pod(tj, config, n, labels),
        )
    )
    return objects
