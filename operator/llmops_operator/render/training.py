"""TrainingJob → ServiceAccount, ConfigMaps, progress RBAC, checkpoint claim, PyTorchJob.

Decisions live here; ``templates/training/*.j2`` hold the YAML shape. Children come back in the
order they should be created (identity and config before the job that uses them).
"""

from __future__ import annotations

from typing import Any

import yaml

from llmops_core.api.hardware import INSTANCES
from llmops_core.api.training import TrainingJob
from llmops_core.config import OperatorConfig

from . import pods
from .engine import render_template

CONFIG_DIR = "/etc/llmops"
JOB_FILE = f"{CONFIG_DIR}/job.yaml"
CHECKPOINT_DIR = "/checkpoints"
EFA_ENV = {"FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1", "FI_EFA_FORK_SAFE": "1", "NCCL_DEBUG": "WARN"}


def names(job: str) -> dict[str, str]:
    """Every child's name, derived from the job's (validation keeps each within 63 characters)."""
    return {
        "pytorchjob": job,
        "config": f"{job}-config",
        "progress": f"{job}-progress",
        "role": f"{job}-progress-writer",
        "service_account": f"{job}-trainer",
        "checkpoints": f"{job}-checkpoints",
    }


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


def _pod(tj: TrainingJob, config: OperatorConfig, n: dict[str, str], image: str) -> dict[str, Any]:
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
    return render_template(
        "training/pod.yaml.j2",
        labels=pods.labels(tj.kind, tj.metadata.name, "llmops-trainer", "training"),
        service_account=spec.service_account_name or n["service_account"],
        image=image,
        pull_policy=config.image_pull_policy,
        args=["-m", "llmops_train", "--job", JOB_FILE],
        env=pods.env(ours, spec.env),
        resources=pods.resources(
            res.accelerator,
            res.accelerators_per_node,
            res.cpu or config.trainer_cpu,
            res.memory or config.trainer_memory,
            efa_devices(tj),
        ),
        config_map=n["config"],
        checkpoint_claim=checkpoint_claim,
        claim_volumes=claim_vols,
        claim_mounts=claim_mounts,
        shm_size=str(res.shm_size),
        affinity=pods.node_affinity(res.instance_types),
        node_selector=spec.scheduling.node_selector,
        tolerations=pods.tolerations(res.accelerator, spec.scheduling.tolerations),
        priority_class=spec.scheduling.priority_class_name,
    )


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
    spec, name, ns = tj.spec, tj.metadata.name, tj.metadata.namespace
    n = names(name)
    common = {"namespace": ns, "labels": pods.labels(tj.kind, name, "llmops-trainer", "training")}
    objects: list[dict[str, Any]] = []
    if spec.service_account_name is None:
        objects.append(
            render_template("training/serviceaccount.yaml.j2", name=n["service_account"], **common)
        )
    objects += [
        render_template(
            "training/configmap-job.yaml.j2", name=n["config"], job_yaml=job_manifest(tj), **common
        ),
        render_template("training/configmap-progress.yaml.j2", name=n["progress"], **common),
        render_template("training/role.yaml.j2", name=n["role"], configmap=n["progress"], **common),
        render_template(
            "training/rolebinding.yaml.j2",
            name=n["role"],
            service_account=spec.service_account_name or n["service_account"],
            **common,
        ),
    ]
    claim = spec.checkpoint.volume_claim
    if claim is not None:
        objects.append(
            render_template(
                "training/pvc.yaml.j2",
                name=n["checkpoints"],
                size=str(claim.size),
                access_mode=claim.access_mode,
                storage_class=claim.storage_class_name or config.storage_class,
                **common,
            )
        )
    res = spec.resources
    pod = _pod(tj, config, n, spec.image or config.trainer_image)
    job_labels = dict(common["labels"])
    if spec.scheduling.queue:
        job_labels["kueue.x-k8s.io/queue-name"] = spec.scheduling.queue
    objects.append(
        render_template(
            "training/pytorchjob.yaml.j2",
            name=n["pytorchjob"],
            namespace=ns,
            labels=job_labels,
            nproc_per_node=str(res.accelerators_per_node),
            run_policy=_run_policy(tj),
            workers=res.nodes - 1,
            pod=pod,
        )
    )
    return objects
