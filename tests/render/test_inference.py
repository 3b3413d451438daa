"""InferenceEndpoint rendering, option by option."""

from __future__ import annotations

from typing import Any

import pytest

from llmops_core import api
from llmops_core.config import OperatorConfig
from llmops_operator.render import UnresolvedModel, render
from tests.kube import assert_valid
from tests.manifests import endpoint

GPU = {"accelerator": "nvidia-gpu", "acceleratorsPerReplica": 4, "instanceTypes": ["g6e.12xlarge"]}


def objects(resolved: str | None = None, **spec: Any) -> dict[str, dict[str, Any]]:
    rendered = render(api.load(endpoint(**spec)), resolved_model=resolved)
    for obj in rendered:
        assert_valid(obj)
    return {o["kind"]: o for o in rendered}


def pod(out: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return out["Deployment"]["spec"]["template"]["spec"]


def server(out: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return pod(out)["containers"][0]


def env(out: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in server(out)["env"]}


def test_fixed_size_endpoint() -> None:
    out = objects()
    assert list(out) == ["Deployment", "Service"]
    assert out["Deployment"]["spec"]["replicas"] == 1
    assert out["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_autoscaled_endpoint_starts_at_its_floor() -> None:
    out = objects(replicas={"min": 2, "max": 5})
    assert list(out) == ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]
    # created with min replicas, not the Deployment default of 1 that the HPA would raise only at
    # its first sync (the operator leaves replicas out of later applies: the HPA owns it then)
    assert out["Deployment"]["spec"]["replicas"] == 2
    hpa = out["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] == 5
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ep"}
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_replicas_without_max_is_a_fixed_size() -> None:
    out = objects(replicas={"min": 3})
    assert out["Deployment"]["spec"]["replicas"] == 3 and "HorizontalPodAutoscaler" not in out
    hpa = objects(replicas={"max": 4})["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)


def test_requests_in_flight_metric() -> None:
    auto = {"metric": "requestsInFlight", "targetRequestsPerPod": 12}
    hpa = objects(replicas={"min": 1, "max": 3}, autoscaling=auto)["HorizontalPodAutoscaler"]["spec"]
    assert hpa["metrics"] == [
        {"type": "Pods", "pods": {"metric": {"name": "vllm:num_requests_running"},
                                  "target": {"type": "AverageValue", "averageValue": "12"}}},
    ]  # fmt: skip


def test_pdb_only_from_two_replicas() -> None:
    assert "PodDisruptionBudget" not in objects(replicas={"min": 1, "max": 4})
    pdb = objects(replicas={"min": 2, "max": 2})["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    custom = objects(replicas={"min": 3, "max": 3}, disruptionBudget={"minAvailable": "50%"})
    assert custom["PodDisruptionBudget"]["spec"]["minAvailable"] == "50%"
    assert "PodDisruptionBudget" not in objects(
        replicas={"min": 3, "max": 3}, disruptionBudget={"enabled": False}
    )


def test_rolling_update_keeps_capacity_and_drains() -> None:
    out = objects()
    strategy = out["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}
    assert server(out)["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert pod(out)["terminationGracePeriodSeconds"] > 15 + 30
    assert env(out)["LLMOPS_DRAIN_TIMEOUT"] == "30"


def test_probes_sized_for_model_loading() -> None:
    cpu = server(objects())
    assert cpu["startupProbe"]["httpGet"]["path"] == "/health"
    assert cpu["startupProbe"]["failureThreshold"] * cpu["startupProbe"]["periodSeconds"] >= 600
    assert cpu["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert cpu["livenessProbe"]["httpGet"]["path"] == "/health"
    vllm = server(objects(runtime="vllm", resources=GPU))
    assert vllm["startupProbe"]["failureThreshold"] * vllm["startupProbe"]["periodSeconds"] == 1800
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize(
    ("mode", "key"),
    [
        ("preferred", "preferredDuringSchedulingIgnoredDuringExecution"),
        ("required", "requiredDuringSchedulingIgnoredDuringExecution"),
    ],
)
def test_anti_affinity(mode: str, key: str) -> None:
    anti = pod(objects(scheduling={"antiAffinity": mode}))["affinity"]["podAntiAffinity"]
    assert list(anti) == [key]
    term = anti[key][0].get("podAffinityTerm", anti[key][0])
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "ep"


@pytest.mark.parametrize(("mode", "when"), [("preferred", "ScheduleAnyway"), ("required", "DoNotSchedule")])
def test_zone_spread(mode: str, when: str) -> None:
    spread = pod(objects(scheduling={"zoneSpread": mode}))["topologySpreadConstraints"]
    assert (
        spread[0]["topologyKey"] == "topology.kubernetes.io/zone" and spread[0]["whenUnsatisfiable"] == when
    )
    assert "topologySpreadConstraints" not in pod(objects(scheduling={"zoneSpread": "none"}))


def test_llmops_runtime_env() -> None:
    out = objects(
        server={"maxBatchSize": 32, "maxQueue": 10, "quantization": "int8"},
        model={"location": "s3://bucket/model", "name": "chat"},
    )
    e = env(out)
    assert server(out)["command"] == ["python", "-m", "llmops_serve"]
    assert e["LLMOPS_MODEL"] == "s3://bucket/model" and e["LLMOPS_SERVED_MODEL_NAME"] == "chat"
    assert (
        e["LLMOPS_MAX_BATCH_SIZE"] == "32" and e["LLMOPS_QUANTIZE"] == "int8" and e["LLMOPS_PORT"] == "8000"
    )
    assert "LLMOPS_MAX_MODEL_LEN" not in e
    assert pod(out)["automountServiceAccountToken"] is False


def test_vllm_runtime_args_and_tensor_parallel() -> None:
    out = objects(runtime="vllm", resources=GPU, server={"maxModelLen": 4096, "quantization": "awq"})
    args = server(out)["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert args[args.index("--quantization") + 1] == "awq"
    assert args[args.index("--model") + 1] == "/mnt/pvc/models/out"
    assert server(out)["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert pod(out)["tolerations"][0]["key"] == "nvidia.com/gpu"
    claims = [v for v in pod(out)["volumes"] if "persistentVolumeClaim" in v]
    assert claims[0]["persistentVolumeClaim"]["claimName"] == "models"


def test_vllm_from_s3_stages_the_model_first() -> None:
    out = objects(runtime="vllm", resources=GPU, model={"location": "s3://bucket/llama/"})
    init = pod(out)["initContainers"][0]
    assert init["command"] == ["python", "-m", "llmops_core.storage", "fetch", "s3://bucket/llama/", "/model"]
    args = server(out)["args"]
    assert args[args.index("--model") + 1] == "/model"


def test_model_download_is_bounded() -> None:
    """The fetch-model init container has requests and a memory limit; the /model volume a size
    limit, requested as ephemeral storage so the pod lands where the model fits."""
    s3 = {"location": "s3://bucket/llama/"}
    init = pod(objects(runtime="vllm", resources=GPU, model=s3))["initContainers"][0]
    assert init["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "100Gi"}, "limits": {"memory": "2Gi"},
    }  # fmt: skip
    sized = objects(runtime="vllm", resources={**GPU, "modelVolumeSize": "300Gi"}, model=s3)
    volumes = {v["name"]: v for v in pod(sized)["volumes"]}
    assert volumes["model"]["emptyDir"] == {"sizeLimit": "300Gi"}
    assert pod(sized)["initContainers"][0]["resources"]["requests"]["ephemeral-storage"] == "300Gi"
    config = OperatorConfig(fetch_cpu="2", fetch_memory="4Gi", model_volume_size="50Gi")
    rendered = render(api.load(endpoint(runtime="vllm", resources=GPU, model=s3)), config)
    deployment = next(o for o in rendered if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert deployment["initContainers"][0]["resources"]["limits"] == {"memory": "4Gi"}
    assert {v["name"]: v for v in deployment["volumes"]}["model"]["emptyDir"] == {"sizeLimit": "50Gi"}


def test_api_key_secret() -> None:
    key = {"name": "keys", "key": "list"}
    llmops = objects(server={"apiKeySecret": key})
    assert env(llmops)["LLMOPS_API_KEY_FILE"] == "/etc/llmops/secrets/list"
    assert {"name": "api-keys", "secret": {"secretName": "keys"}} in pod(llmops)["volumes"]
    vllm = objects(runtime="vllm", resources=GPU, server={"apiKeySecret": key})
    assert env(vllm)["VLLM_API_KEY"] == {"secretKeyRef": key}


def test_from_training_job_needs_its_output() -> None:
    with pytest.raises(UnresolvedModel, match="fromTrainingJob"):
        objects(model={"fromTrainingJob": "train"})
    out = objects(resolved="pvc://train-checkpoints/model", model={"fromTrainingJob": "train"})
    assert env(out)["LLMOPS_MODEL"] == "pvc://train-checkpoints/model"
    mounts = {m["mountPath"]: m for m in server(out)["volumeMounts"]}
    assert mounts["/mnt/pvc/train-checkpoints"]["readOnly"] is True


def test_restricted_pod_security() -> None:
    out = objects(runtime="vllm", resources=GPU, model={"location": "s3://b/m"})
    for c in pod(out)["containers"] + pod(out)["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert pod(out)["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
