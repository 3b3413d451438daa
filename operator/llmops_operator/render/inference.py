"""InferenceEndpoint → Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.

Runtime ``llmops`` is configured through ``LLMOPS_*`` environment variables (the bundled server
reads them); runtime ``vllm`` through vLLM's own flags. Both listen on 8000, behind Service port 80.
"""

from __future__ import annotations

from typing import Any

from llmops_core.api.inference import InferenceEndpoint
from llmops_core.api.names import endpoint_names
from llmops_core.config import OperatorConfig
from llmops_core.serving import PORT, ServerContract, to_env

from . import pods
from .engine import render_template

API_KEY_DIR = "/etc/llmops/secrets"
PRESTOP_SECONDS = 15  # lets endpoints controllers and load balancers stop routing before the drain
DRAIN_SECONDS = 30


class UnresolvedModel(ValueError):
    """An endpoint serving a TrainingJob's output before that output is known."""


def model_location(ie: InferenceEndpoint, resolved: str | None) -> str:
    if ie.spec.model.location is not None:
        return ie.spec.model.location
    if resolved is None:
        raise UnresolvedModel(
            f"spec.model.fromTrainingJob: TrainingJob {ie.spec.model.from_training_job!r} has no output yet"
        )
    return resolved


def _fetch(ie: InferenceEndpoint, config: OperatorConfig, location: str) -> dict[str, Any] | None:
    """vLLM cannot read s3:// itself: the fetch-model init container and the /model volume it fills."""
    if ie.spec.runtime != "vllm" or not location.startswith("s3://"):
        return None
    size = str(ie.spec.resources.model_volume_size or config.model_volume_size)
    cpu, memory = str(config.fetch_cpu), str(config.fetch_memory)
    return {
        "image": config.server_image,
        "location": location,
        "size": size,
        # Requesting the volume's size as ephemeral storage schedules the pod where the model fits.
        "resources": {
            "requests": {"cpu": cpu, "memory": memory, "ephemeral-storage": size},
            "limits": {"memory": memory},
        },
    }


def _container(ie: InferenceEndpoint, config: OperatorConfig, location: str) -> dict[str, Any]:
    spec, server = ie.spec, ie.spec.server
    served = spec.model.name or ie.metadata.name
    key_file = f"{API_KEY_DIR}/{server.api_key_secret.key}" if server.api_key_secret else None
    if spec.runtime == "llmops":
        contract = ServerContract(
            model=location,
            served_model_name=served,
            max_batch_size=server.max_batch_size,
            max_queue=server.max_queue,
            max_model_len=server.max_model_len,
            quantize=server.quantization,
            dtype=server.dtype,
            api_key_file=key_file,
            drain_timeout=DRAIN_SECONDS,
            pvc_root=config.pvc_root,
            cache_dir="/cache",
            log_json=True,
        )
        ours: dict[str, Any] = {**to_env(contract), "HOME": "/tmp"}
        return {
            "image": spec.image or config.server_image,
            "command": ["python", "-m", "llmops_serve"],
            "args": server.extra_args,
            "env": pods.env(ours, spec.env),
            "ready_path": "/ready",
        }
    path = "/model" if location.startswith("s3://") else _local(location, config)
    args = ["--model", path, "--served-model-name", served, "--port", str(PORT)]
    args += ["--tensor-parallel-size", str(spec.resources.accelerators_per_replica)]
    args += ["--max-num-seqs", str(server.max_batch_size), "--dtype", server.dtype]
    if server.max_model_len:
        args += ["--max-model-len", str(server.max_model_len)]
    if server.quantization != "none":
        args += ["--quantization", server.quantization]
    env = pods.env({"HOME": "/tmp", "XDG_CACHE_HOME": "/cache", "HF_HUB_OFFLINE": "1"}, spec.env)
    if server.api_key_secret:  # vLLM reads one key from VLLM_API_KEY
        ref = server.api_key_secret.model_dump(by_alias=True)
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": ref}})
    return {
        "image": spec.image or config.vllm_image,
        "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        "args": args + server.extra_args,
        "env": env,
        "ready_path": "/health",
    }


def _local(location: str, config: OperatorConfig) -> str:
    if location.startswith("pvc://"):
        return f"{config.pvc_root}/{location.removeprefix('pvc://')}"
    return location


def _anti_affinity(ie: InferenceEndpoint, selector: dict[str, str]) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
    if ie.spec.scheduling.anti_affinity == "required":
        return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}
    return {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]}


def _spread(ie: InferenceEndpoint, selector: dict[str, str]) -> list[dict[str, Any]]:
    mode = ie.spec.scheduling.zone_spread
    if mode == "none":
        return []
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule" if mode == "required" else "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }
    ]


def _probes(ie: InferenceEndpoint, ready_path: str) -> dict[str, Any]:
    """Startup allows slow loads (KServe's vLLM runtime uses 60 x 30 s); liveness only after it."""
    slow = ie.spec.runtime == "vllm" or ie.spec.resources.accelerator != "cpu"
    http = {"port": "http"}
    return {
        "startupProbe": {
            "httpGet": {**http, "path": "/health"},
            "periodSeconds": 30 if slow else 10,
            "failureThreshold": 60,
            "timeoutSeconds": 5,
        },
        "readinessProbe": {
            "httpGet": {**http, "path": ready_path},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {**http, "path": "/health"},
            "periodSeconds": 15,
            "failureThreshold": 4,
            "timeoutSeconds": 5,
        },
    }


def _hpa_metric(ie: InferenceEndpoint) -> dict[str, Any]:
    auto = ie.spec.autoscaling
    if auto.metric == "cpu":
        target = {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization}
        return {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    target = {"type": "AverageValue", "averageValue": str(auto.target_requests_per_pod)}
    return {"type": "Pods", "pods": {"metric": {"name": auto.pods_metric}, "target": target}}


def render_inference_endpoint(
    ie: InferenceEndpoint, config: OperatorConfig, resolved_model: str | None = None
) -> list[dict[str, Any]]:
    spec, ns = ie.spec, ie.metadata.namespace
    n = endpoint_names(ie.metadata.name)
    location = model_location(ie, resolved_model)
    labels = pods.labels(ie.kind, ie.metadata.name, "llmops-server", "inference")
    selector = {k: labels[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
    container = _container(ie, config, location)
    res = spec.resources
    claim_vols, claim_mounts = pods.claim_volumes(pods.claims([location]), config.pvc_root, read_only=True)
    autoscaled = spec.replicas.upper > spec.replicas.min
    objects = [
        render_template(
            "inference/deployment.yaml.j2",
            metadata=pods.metadata(n["deployment"], ns, labels),
            labels=labels,
            # Created at the floor: with an HPA, the count is then the HPA's (the operator's applies
            # leave it out, controller/inference.py), so a re-apply never undoes a scale.
            replicas=spec.replicas.min,
            selector=selector,
            image=container["image"],
            pull_policy=config.image_pull_policy,
            command=container["command"],
            args=container["args"],
            env=container["env"],
            port=PORT,
            probes=_probes(ie, container["ready_path"]),
            prestop_seconds=PRESTOP_SECONDS,
            grace_seconds=PRESTOP_SECONDS + DRAIN_SECONDS + 15,
            resources=pods.resources(
                res.accelerator,
                res.accelerators_per_replica,
                res.cpu or config.server_cpu,
                res.memory or config.server_memory,
            ),
            fetch=_fetch(ie, config, location),
            api_key_secret=spec.server.api_key_secret.name if spec.server.api_key_secret else None,
            api_key_dir=API_KEY_DIR,
            spread=_spread(ie, selector),
            **pods.shared(
                service_account=spec.service_account_name,
                scheduling=spec.scheduling,
                accelerator=res.accelerator,
                shm_size=res.shm_size,
                claim_volumes=claim_vols,
                claim_mounts=claim_mounts,
                affinity=pods.affinity(res.instance_types, _anti_affinity(ie, selector)),
            ),
        ),
        render_template(
            "inference/service.yaml.j2",
            metadata=pods.metadata(n["service"], ns, labels),
            selector=selector,
            port=PORT,
        ),
    ]
    if autoscaled:
        objects.append(
            render_template(
                "inference/hpa.yaml.j2",
                metadata=pods.metadata(n["autoscaler"], ns, labels),
                deployment=n["deployment"],
                min_replicas=spec.replicas.min,
                max_replicas=spec.replicas.upper,
                metric=_hpa_metric(ie),
                stabilization=spec.autoscaling.scale_down_stabilization_seconds,
            )
        )
    pdb = spec.disruption_budget
    if pdb.enabled and spec.replicas.min >= 2:
        budget = (
            {"minAvailable": pdb.min_available}
            if pdb.min_available is not None
            else {"maxUnavailable": pdb.max_unavailable if pdb.max_unavailable is not None else 1}
        )
        objects.append(
            render_template(
                "inference/pdb.yaml.j2",
                metadata=pods.metadata(n["disruption_budget"], ns, labels),
                selector=selector,
                budget=budget,
            )
        )
    return objects
