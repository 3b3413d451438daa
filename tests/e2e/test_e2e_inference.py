"""Issue 10 (5), (4): an InferenceEndpoint through the real Deployment and ReplicaSet controllers,
the scheduler spreading pods over zones, the HPA/PDB APIs, the scale subresource and the garbage
collector; fromTrainingJob waits for a real training run."""

from __future__ import annotations

import time

import pytest
from e2e_cluster import (
    GROUP,
    VERSION,
    example,
    exit_pod,
    job_pods,
    kubectl,
    missing,
    pods,
    running,
    scope,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster():
    with scope() as s:
        yield s


def ie(custom, ns, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", name)


def endpoint_pods(core, ns, name):
    return pods(core, ns, f"app.kubernetes.io/instance={name}")


def zones(core, pod_list) -> set[str]:
    return {core.read_node(p.spec.node_name).metadata.labels["topology.kubernetes.io/zone"] for p in pod_list}


def model_claim(core, ns, name="models"):
    core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}},
        },
    )


def test_endpoint_runs_pods_spread_over_zones_and_scales(cluster):
    from kubernetes import client

    ns, custom, core, apps = cluster
    model_claim(core, ns)
    doc = example("cpu-endpoint.yaml", ns)  # min 2, max 6, zone spread
    name = doc["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)

    dep = wait(lambda: apps.read_namespaced_deployment(name, ns), 120, "Deployment")
    assert dep.metadata.owner_references[0].kind == "InferenceEndpoint"
    rs = wait(lambda: apps.list_namespaced_replica_set(ns).items, 120, "ReplicaSet (deployment controller)")
    assert rs[0].metadata.owner_references[0].kind == "Deployment"
    live = wait(
        lambda: len(p := endpoint_pods(core, ns, name)) == 2 and running(p) and p, 180, "2 pods Running"
    )
    assert len(zones(core, live)) == 2, [p.spec.node_name for p in live]
    wait(
        lambda: (ie(custom, ns, name).get("status") or {}).get("readyReplicas") == 2,
        120,
        "status.readyReplicas",
    )
    kubectl("-n", ns, "wait", "--for=condition=Ready", f"inferenceendpoint/{name}", "--timeout=120s")

    svc = core.read_namespaced_service(name, ns)
    assert svc.spec.cluster_ip  # allocated by the real API server (never dialled: nothing listens)
    hpa = client.AutoscalingV2Api().read_namespaced_horizontal_pod_autoscaler(name, ns)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 6)
    client.PolicyV1Api().read_namespaced_pod_disruption_budget(name, ns)

    # the scale subresource (kubectl scale, and what autoscalers use)
    kubectl("-n", ns, "scale", f"inferenceendpoint/{name}", "--replicas=3")
    assert ie(custom, ns, name)["spec"]["replicas"]["min"] == 3
    wait(
        lambda: (
            client.AutoscalingV2Api().read_namespaced_horizontal_pod_autoscaler(name, ns).spec.min_replicas
            == 3
        ),
        120,
        "HPA minReplicas 3",
    )
    live = wait(
        lambda: len(p := endpoint_pods(core, ns, name)) == 3 and running(p) and p, 180, "3 pods Running"
    )
    assert len(zones(core, live)) == 3, [p.spec.node_name for p in live]
    kubectl("-n", ns, "wait", "--for=jsonpath={.status.readyReplicas}=3", f"ie/{name}", "--timeout=120s")


def test_autoscaled_endpoint_starts_at_its_floor_and_a_scale_is_never_undone(cluster):
    """Created with replicas.min (the Deployment default of 1 would serve below the floor, and be
    Ready there, until the HPA's first sync); after that the count is the HPA's: the operator's
    server-side applies, which repair drift, leave it alone."""
    from kubernetes import client

    ns, custom, core, apps = cluster
    doc = example("cpu-endpoint.yaml", ns)  # min 2, max 6
    doc["metadata"]["name"] = "floor"
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)
    dep = wait(lambda: apps.read_namespaced_deployment("floor", ns), 120, "Deployment")
    assert dep.spec.replicas == 2
    autoscaling = client.AutoscalingV2Api()
    hpa = wait(
        lambda: (
            (h := autoscaling.read_namespaced_horizontal_pod_autoscaler("floor", ns)).status.current_replicas
            == 2
            and h
        ),
        120,
        "the HPA's first sync",
    )
    assert hpa.status.last_scale_time is None  # it never had to raise the count
    kubectl("-n", ns, "wait", "--for=condition=Ready", "ie/floor", "--timeout=180s")

    apps.patch_namespaced_deployment_scale("floor", ns, {"spec": {"replicas": 3}})  # as the HPA scales
    # drift in a field the operator owns makes it re-apply the Deployment
    edit = {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 1}}}}
    apps.patch_namespaced_deployment("floor", ns, edit)

    def repaired():
        d = apps.read_namespaced_deployment("floor", ns)
        return d.spec.strategy.rolling_update.max_unavailable == 0 and d

    assert wait(repaired, 120, "the edit repaired").spec.replicas == 3
    wait(lambda: len(p := endpoint_pods(core, ns, "floor")) == 3 and running(p), 180, "3 pods Running")
    kubectl("-n", ns, "wait", "--for=jsonpath={.status.readyReplicas}=3", "ie/floor", "--timeout=120s")
    # a first rollout and a scale-up pass through partial readiness: Progressing, never a Warning
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=floor").items
    ours = [e for e in events if e.involved_object.kind == "InferenceEndpoint"]
    assert ours and [(e.reason, e.message) for e in ours if e.type == "Warning"] == []


def test_a_fixed_size_endpoint_made_autoscaled_keeps_its_replicas(cluster):
    """A fixed size re-applied (the operator's apply then owns ``replicas``), then autoscaling
    turned on: the apply that hands the count to the HPA must not drop it to the Deployment default."""
    from kubernetes import client

    ns, custom, _core, apps = cluster
    doc = example("cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = "handover"
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    doc["spec"]["replicas"] = {"min": 3, "max": 3}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)
    wait(lambda: apps.read_namespaced_deployment("handover", ns).spec.replicas == 3, 120, "3 replicas")

    def resize(replicas):
        patch = {"spec": {"replicas": replicas}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "handover", patch)

    resize({"min": 4, "max": 4})
    wait(lambda: apps.read_namespaced_deployment("handover", ns).spec.replicas == 4, 120, "4 replicas")
    resize({"min": 2, "max": 6})
    autoscaling = client.AutoscalingV2Api()
    wait(lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler("handover", ns), 120, "the HPA")
    seen = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the HPA keeps 4 (within 2..6); nothing may lower it meanwhile
        seen.add(apps.read_namespaced_deployment("handover", ns).spec.replicas)
        time.sleep(0.2)
    assert seen == {4}, seen


def test_endpoint_with_min_zero_is_refused_by_the_api_server(cluster):
    """Issue 11, 5: an HPA with minReplicas 0 is invalid without an alpha gate, so replicas.min 0 is
    refused at admission with our message instead of rendering an object the API server refuses."""
    from kubernetes.client.exceptions import ApiException

    ns, custom, _core, _apps = cluster
    doc = example("cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = "zero"
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    doc["spec"]["replicas"] = {"min": 0, "max": 2}
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)
    assert e.value.status == 422 and "scaling to zero is not supported" in e.value.body


def test_from_training_job_waits_then_serves(cluster):
    ns, custom, core, apps = cluster
    tj = example("tiny-cpu-training.yaml", ns)
    ep = example("endpoint-from-training.yaml", ns)
    name, job = ep["metadata"]["name"], tj["metadata"]["name"]
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", ep)
    wait(
        lambda: (ie(custom, ns, name).get("status") or {}).get("phase") == "WaitingForModel",
        90,
        "WaitingForModel",
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", tj)
    wait(lambda: running(job_pods(core, ns, job)), 180, "training pods Running")
    assert missing(lambda: apps.read_namespaced_deployment(name, ns)), "served before the model exists"
    for p in job_pods(core, ns, job):
        exit_pod(core, ns, p.metadata.name, 0)
    dep = wait(lambda: apps.read_namespaced_deployment(name, ns), 180, "Deployment once training succeeded")
    assert dep.spec.template.spec.volumes  # the job's checkpoint claim, mounted
    wait(lambda: running(endpoint_pods(core, ns, name)), 180, "endpoint pods Running")
    kubectl("-n", ns, "wait", "--for=condition=Ready", f"ie/{name}", "--timeout=120s")


def test_deleting_an_endpoint_garbage_collects_every_child(cluster):
    ns, custom, core, apps = cluster
    doc = example("cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = "gc"
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)
    wait(lambda: running(endpoint_pods(core, ns, "gc")), 180, "pods Running")
    refs = (ie(custom, ns, "gc").get("status") or {}).get("children") or []
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "gc")
    wait(lambda: missing(lambda: apps.read_namespaced_deployment("gc", ns)), 180, "Deployment collected")
    wait(lambda: not endpoint_pods(core, ns, "gc"), 180, "ReplicaSet and pods collected")
    left = "deployment,replicaset,service,hpa,pdb,configmap"

    def collected() -> bool:
        return not kubectl("-n", ns, "get", left, "-l", "app.kubernetes.io/instance=gc", "-o", "name").strip()

    wait(collected, 180, f"every child collected: {refs}")
