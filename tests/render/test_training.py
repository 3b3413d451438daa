"""TrainingJob rendering, option by option."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmops_core import api
from llmops_core.config import OperatorConfig
from llmops_operator.render import render
from tests.kube import assert_valid
from tests.manifests import training_job


def objects(**spec: Any) -> dict[str, dict[str, Any]]:
    rendered = render(api.load(training_job(**spec)))
    for obj in rendered:
        assert_valid(obj)
    return {o["kind"]: o for o in rendered}


def pod(job: dict[str, Any], replica: str = "Master") -> dict[str, Any]:
    return job["spec"]["pytorchReplicaSpecs"][replica]["template"]["spec"]


def container(job: dict[str, Any]) -> dict[str, Any]:
    return pod(job)["containers"][0]


def env(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(job)["env"]}


def test_children_in_creation_order() -> None:
    kinds = [o["kind"] for o in render(api.load(training_job(checkpoint={"volumeClaim": {"size": "1Gi"}})))]
    assert kinds == [
        "ServiceAccount", "ConfigMap", "ConfigMap", "Role", "RoleBinding", "PersistentVolumeClaim", "PyTorchJob",
    ]  # fmt: skip


def test_single_node_has_only_a_master() -> None:
    job = objects()["PyTorchJob"]
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    assert job["spec"]["nprocPerNode"] == "1"
    c = container(job)
    # the launcher runs torchrun and turns what happened into a retryable or permanent exit code
    assert c["name"] == "pytorch" and c["command"] == ["python", "-m", "llmops_train.launch"]
    assert c["args"] == ["--job", "/etc/llmops/job.yaml"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod(job)["terminationGracePeriodSeconds"] >= 120  # a checkpoint on SIGTERM


def test_multi_node_gpu_job() -> None:
    res = {
        "accelerator": "nvidia-gpu",
        "acceleratorsPerNode": 8,
        "nodes": 4,
        "instanceTypes": ["p4d.24xlarge"],
    }
    job = objects(resources=res, checkpoint={"volumeClaim": {"size": "100Gi"}})["PyTorchJob"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    assert job["spec"]["nprocPerNode"] == "8"
    limits = container(job)["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 8 == container(job)["resources"]["requests"]["nvidia.com/gpu"]
    assert pod(job)["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    terms = pod(job)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms[0]["matchExpressions"][0] == {
        "key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p4d.24xlarge"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("instance_types", "devices", "processes"),
    [
        (["trn1.32xlarge"], 16, "32"),
        (["trn1n.32xlarge"], 8, "16"),
        (["trn2.48xlarge"], 16, "64"),
        ([], 1, "2"),
    ],
)
def test_trainium_runs_one_process_per_neuroncore(
    instance_types: list[str], devices: int, processes: str
) -> None:
    res = {"accelerator": "aws-trainium", "acceleratorsPerNode": devices, "instanceTypes": instance_types}
    job = objects(image="registry.example/neuron-trainer:1", resources=res)["PyTorchJob"]
    assert job["spec"]["nprocPerNode"] == processes
    assert container(job)["resources"]["limits"]["aws.amazon.com/neuron"] == devices


def test_trainium_generations_cannot_mix() -> None:
    res = {"accelerator": "aws-trainium", "instanceTypes": ["trn1.32xlarge", "trn2.48xlarge"]}
    with pytest.raises(api.SpecError, match="NeuronCores per device"):
        api.load(training_job(resources=res))


def test_workers_run_the_masters_pod_as_their_own_copy() -> None:
    job = objects(resources={"accelerator": "cpu", "nodes": 3})["PyTorchJob"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Worker"]["replicas"] == 2
    assert specs["Worker"]["template"] == specs["Master"]["template"]
    pod(job, "Worker")["containers"][0]["env"].append({"name": "ONLY", "value": "worker"})
    pod(job, "Worker")["securityContext"]["runAsUser"] = 1
    assert "ONLY" not in env(job) and pod(job)["securityContext"]["runAsUser"] == 10001


def test_trainium_uses_neuron_resources_and_taint() -> None:
    res = {"accelerator": "aws-trainium", "acceleratorsPerNode": 16, "instanceTypes": ["trn1.32xlarge"]}
    job = objects(image="registry.example/neuron-trainer:1", resources=res)["PyTorchJob"]
    assert container(job)["resources"]["limits"]["aws.amazon.com/neuron"] == 16
    assert "nvidia.com/gpu" not in container(job)["resources"]["limits"]
    assert pod(job)["tolerations"][0]["key"] == "aws.amazon.com/neuron"


def test_cpu_job_requests_no_devices_and_no_tolerations() -> None:
    job = objects()["PyTorchJob"]
    limits = container(job)["resources"]["limits"]
    assert set(limits) == {"memory"}
    assert "tolerations" not in pod(job) and "affinity" not in pod(job)


def test_efa_resources_and_env() -> None:
    res = {
        "accelerator": "nvidia-gpu",
        "acceleratorsPerNode": 8,
        "instanceTypes": ["p5.48xlarge"],
        "efa": True,
    }
    job = objects(resources=res)["PyTorchJob"]
    assert container(job)["resources"]["limits"]["vpc.amazonaws.com/efa"] == 32
    assert container(job)["resources"]["requests"]["vpc.amazonaws.com/efa"] == 32
    e = env(job)
    assert e["FI_PROVIDER"] == "efa" and e["FI_EFA_USE_DEVICE_RDMA"] == "1" and e["NCCL_DEBUG"] == "WARN"
    override = objects(resources={**res, "efaDevices": 4})["PyTorchJob"]
    assert container(override)["resources"]["limits"]["vpc.amazonaws.com/efa"] == 4
    assert "FI_PROVIDER" not in env(objects()["PyTorchJob"])


def test_shm_is_memory_backed() -> None:
    job = objects(resources={"accelerator": "cpu", "shmSize": "2Gi"})["PyTorchJob"]
    shm = next(v for v in pod(job)["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(job)["volumeMounts"]


def test_checkpoint_claim_created_and_mounted() -> None:
    ckpt = {"volumeClaim": {"size": "500Gi", "storageClassName": "fsx-lustre"}}
    out = objects(checkpoint=ckpt, output={"location": "pvc://job-checkpoints/model"})
    pvc = out["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "job-checkpoints"
    assert pvc["spec"]["storageClassName"] == "fsx-lustre" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in pod(out["PyTorchJob"])["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "job-checkpoints"}
    mounts = {m["mountPath"]: m["name"] for m in container(out["PyTorchJob"])["volumeMounts"]}
    assert mounts["/checkpoints"] == "checkpoints" and mounts["/mnt/pvc/job-checkpoints"] == "checkpoints"


def test_operator_storage_class_default() -> None:
    tj = api.load(training_job(checkpoint={"volumeClaim": {"size": "1Gi"}}))
    pvc = next(
        o for o in render(tj, OperatorConfig(storage_class="gp3")) if o["kind"] == "PersistentVolumeClaim"
    )
    assert pvc["spec"]["storageClassName"] == "gp3"


def test_existing_claim_and_scratch() -> None:
    job = objects(checkpoint={"existingClaim": "shared"})["PyTorchJob"]
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "shared"}
    scratch = objects()
    assert "PersistentVolumeClaim" not in scratch
    assert {v["name"]: v for v in pod(scratch["PyTorchJob"])["volumes"]}["checkpoints"] == {
        "name": "checkpoints", "emptyDir": {},
    }  # fmt: skip


def test_data_claims_are_mounted_once() -> None:
    job = objects(data={"train": "pvc://datasets/a", "validation": "pvc://datasets/b"})["PyTorchJob"]
    claims = [
        v["persistentVolumeClaim"]["claimName"] for v in pod(job)["volumes"] if "persistentVolumeClaim" in v
    ]
    assert claims == ["datasets", "models"]


def test_progress_rbac_is_one_configmap() -> None:
    out = objects()
    assert out["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["job-progress"],
         "verbs": ["get", "patch", "update"]},
    ]  # fmt: skip
    assert out["RoleBinding"]["subjects"][0]["name"] == "job-trainer"
    assert pod(out["PyTorchJob"])["serviceAccountName"] == "job-trainer"
    progress = out["ConfigMap"]  # the last ConfigMap rendered
    assert progress["metadata"]["name"] == "job-progress" and "data" not in progress, (
        "the trainer owns its data"
    )
    assert env(out["PyTorchJob"])["LLMOPS_PROGRESS_CONFIGMAP"] == "job-progress"


def test_own_service_account_is_bound_not_created() -> None:
    out = objects(serviceAccountName="irsa-trainer")
    assert "ServiceAccount" not in out
    assert out["RoleBinding"]["subjects"][0]["name"] == "irsa-trainer"


def test_job_config_holds_the_defaulted_spec() -> None:
    rendered = render(api.load(training_job()))
    config = next(o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "job-config")
    doc = yaml.safe_load(config["data"]["job.yaml"])
    assert doc["spec"]["hyperparameters"]["learningRate"] == 3e-4
    assert api.load(doc).spec.model.preset == "tiny"


def test_run_policy_and_gang_scheduling() -> None:
    policy = {
        "backoffLimit": 5,
        "activeDeadlineSeconds": 3600,
        "ttlSecondsAfterFinished": 60,
        "suspend": True,
    }
    job = objects(runPolicy=policy, scheduling={"gangScheduler": "volcano", "priorityClassName": "hi"})[
        "PyTorchJob"
    ]
    rp = job["spec"]["runPolicy"]
    assert rp["backoffLimit"] == 5 and rp["activeDeadlineSeconds"] == 3600 and rp["suspend"] is True
    assert rp["schedulingPolicy"] == {"minAvailable": 1, "priorityClass": "hi"}
    assert pod(job)["priorityClassName"] == "hi"


def test_kueue_queue_label_leaves_suspend_to_kueue() -> None:
    job = objects(scheduling={"queue": "team-a"})["PyTorchJob"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "suspend" not in job["spec"]["runPolicy"]


def test_restricted_pod_security() -> None:
    job = objects()["PyTorchJob"]
    sc = pod(job)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container(job)["securityContext"]
    assert csc == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip


def test_user_env_cannot_override_ours() -> None:
    job = objects(
        env=[{"name": "LLMOPS_CHECKPOINT_DIR", "value": "/evil"}, {"name": "WANDB_MODE", "value": "off"}]
    )
    e = env(job["PyTorchJob"])
    assert e["LLMOPS_CHECKPOINT_DIR"] == "/checkpoints" and e["WANDB_MODE"] == "off"


@pytest.mark.parametrize("kind", ["ServiceAccount", "ConfigMap", "Role", "RoleBinding", "PyTorchJob"])
def test_standard_labels(kind: str) -> None:
    labels = objects()[kind]["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "job"
    assert labels["app.kubernetes.io/managed-by"] == "llmops-operator"
    assert labels["llmops.dev/trainingjob"] == "job"
