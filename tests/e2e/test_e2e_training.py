"""Issue 10 (2), (3), (4): a TrainingJob through the real Kubeflow training operator, scheduler and
garbage collector. Pods are kwok's: Running once bound, completed by annotating them
(``llmops.dev/simulated-exit-code``)."""

from __future__ import annotations

import copy
import time

import pytest
from e2e_cluster import (
    GROUP,
    VERSION,
    ensure,
    example,
    exit_pod,
    job_pods,
    kubectl,
    missing,
    running,
    scope,
    wait,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
P5_NODES = {"p5-0", "p5-1"}


@pytest.fixture(scope="module")
def cluster():
    with scope() as s:
        yield s


def tj(custom, ns, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", name)


def pytorchjob(custom, ns, name):
    return custom.get_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", name)


def phase(custom, ns, name) -> str | None:
    return (tj(custom, ns, name).get("status") or {}).get("phase")


def tiny(ns: str, name: str, **run_policy) -> dict:
    doc = example("tiny-cpu-training.yaml", ns)
    doc["metadata"]["name"] = name
    doc["spec"]["output"] = {"location": f"pvc://{name}-checkpoints/model"}
    if run_policy:
        doc["spec"]["runPolicy"] = run_policy
    return doc


def create(custom, ns, doc) -> str:
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc)
    return doc["metadata"]["name"]


def test_p5_job_is_scheduled_only_on_p5_nodes_runs_and_succeeds(cluster):
    from kubernetes import client

    ns, custom, core, _apps = cluster
    doc = copy.deepcopy(example("p5-efa-training.yaml", ns))
    doc["spec"]["scheduling"].pop("gangScheduler")  # no Volcano here: the default scheduler binds
    ensure(
        lambda: client.SchedulingV1Api().create_priority_class(
            {"metadata": {"name": "training-high"}, "value": 1000}
        )
    )
    core.create_namespaced_service_account(ns, {"metadata": {"name": doc["spec"]["serviceAccountName"]}})
    name = create(custom, ns, doc)

    job = wait(lambda: pytorchjob(custom, ns, name), what="PyTorchJob")
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}
    pods = wait(lambda: (p := job_pods(core, ns, name)) and len(p) == 2 and p, 180, "Master and Worker pods")
    types = {p.metadata.labels["training.kubeflow.org/replica-type"] for p in pods}
    assert types == {"master", "worker"}
    pods = wait(
        lambda: (p := job_pods(core, ns, name)) and all(x.spec.node_name for x in p) and p, 120, "binding"
    )
    nodes = [p.spec.node_name for p in pods]
    assert set(nodes) <= P5_NODES and len(set(nodes)) == 2, nodes  # 8 GPUs each: one pod per p5 node
    for p in pods:
        limits = p.spec.containers[0].resources.limits
        assert limits["nvidia.com/gpu"] == "8" and "vpc.amazonaws.com/efa" in limits
    wait(lambda: running(job_pods(core, ns, name)), 120, "pods Running")
    wait(lambda: phase(custom, ns, name) == "Running", 120, "TrainingJob Running")

    for p in job_pods(core, ns, name):
        exit_pod(core, ns, p.metadata.name, 0)
    out = kubectl("-n", ns, "wait", "--for=condition=Succeeded", f"trainingjob/{name}", "--timeout=180s")
    assert "condition met" in out
    assert phase(custom, ns, name) == "Succeeded"
    assert tj(custom, ns, name)["status"]["outputLocation"] == doc["spec"]["output"]["location"]


def test_a_retryable_exit_restarts_the_pod_and_a_permanent_one_fails_the_job(cluster):
    ns, custom, core, _apps = cluster
    name = create(custom, ns, tiny(ns, "retry"))
    first = wait(lambda: running(p := job_pods(core, ns, name)) and p[0], 180, "the pod Running")
    wait(lambda: phase(custom, ns, name) == "Running", 120, "TrainingJob Running")
    exit_pod(core, ns, first.metadata.name, 137)  # OOM-killed: retryable under restartPolicy ExitCode
    second = wait(
        lambda: running(p := job_pods(core, ns, name)) and p[0].metadata.uid != first.metadata.uid and p[0],
        180,
        "a new pod Running after the retryable exit",
    )
    assert phase(custom, ns, name) in ("Running", "Pending")
    exit_pod(core, ns, second.metadata.name, 1)  # permanent
    wait(lambda: phase(custom, ns, name) == "Failed", 180, "TrainingJob Failed")
    kubectl("-n", ns, "wait", "--for=condition=Ready=False", f"trainingjob/{name}", "--timeout=30s")


def test_ttl_deleted_pytorchjob_is_not_recreated_and_the_job_stays_succeeded(cluster):
    """Issue 11, 2: Kubeflow deletes a finished PyTorchJob after ttlSecondsAfterFinished."""
    ns, custom, core, _apps = cluster
    name = create(custom, ns, tiny(ns, "ttl", ttlSecondsAfterFinished=3))
    wait(lambda: running(job_pods(core, ns, name)), 180, "pods Running")
    for p in job_pods(core, ns, name):
        exit_pod(core, ns, p.metadata.name, 0)
    wait(lambda: phase(custom, ns, name) == "Succeeded", 180, "TrainingJob Succeeded")
    first_uid = pytorchjob(custom, ns, name)["metadata"]["uid"]

    def uid() -> str | None:
        return (
            None
            if missing(lambda: pytorchjob(custom, ns, name))
            else pytorchjob(custom, ns, name)["metadata"]["uid"]
        )

    # the training operator's TTL deletion: the PyTorchJob disappears, or (the bug) a new one with
    # another uid takes its place at once
    wait(lambda: uid() != first_uid, 120, "the training operator's TTL deletion")
    deadline = time.monotonic() + 25  # several operator resync periods (5 s in this suite)
    while time.monotonic() < deadline:
        if (again := uid()) is not None:
            pytest.fail(
                f"the finished job's PyTorchJob was re-created (uid {first_uid} -> {again}): a new run"
            )
        assert phase(custom, ns, name) == "Succeeded"
        time.sleep(1)


def children_of(obj: dict) -> list[dict]:
    return (obj.get("status") or {}).get("children") or []


def exists(ns: str, ref: dict) -> bool:
    group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
    resource = ref["kind"].lower() + (f".{group}" if group else "")
    return bool(kubectl("-n", ns, "get", resource, ref["name"], "--ignore-not-found", "-o", "name").strip())


def test_deleting_a_trainingjob_garbage_collects_every_child(cluster):
    """The real garbage collector, with OwnerReferencesPermissionEnforcement on in the API server."""
    ns, custom, core, _apps = cluster
    name = create(custom, ns, tiny(ns, "gc"))
    refs = wait(lambda: children_of(tj(custom, ns, name)), 120, "status.children")
    wait(lambda: all(exists(ns, r) for r in refs), 120, "every child")
    wait(lambda: running(job_pods(core, ns, name)), 180, "pods Running")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", name)
    wait(lambda: not any(exists(ns, r) for r in refs), 180, f"children garbage-collected: {refs}")
    wait(lambda: not job_pods(core, ns, name), 180, "the PyTorchJob's pods gone")
