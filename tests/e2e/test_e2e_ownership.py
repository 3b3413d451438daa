"""Field and object ownership on a real API server: server-side apply leaves other writers' fields
alone, a same-named object we do not own is never taken over, and the periodic pass posts its events."""

from __future__ import annotations

import time

import pytest
from e2e_cluster import GROUP, VERSION, condition, example, kubectl, scope, wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster():
    with scope() as s:
        yield s


def endpoint(custom, ns, name):
    doc = example("cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = name
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", doc)


def events(core, ns, name, reason):
    items = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [e for e in items if e.reason == reason]


def test_a_second_writer_keeps_its_fields_and_causes_no_repairs(cluster):
    """Another controller (Kueue, a mutating webhook) adds a toleration, a pod annotation and a label to
    our Deployment with its own field manager: they stay, and nothing is "repaired" pass after pass."""
    ns, custom, core, apps = cluster
    endpoint(custom, ns, "shared")
    wait(lambda: apps.read_namespaced_deployment("shared", ns), 60, "the Deployment")
    theirs = (
        '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"shared","labels":{"team":"x"}},'
        '"spec":{"template":{"metadata":{"annotations":{"sidecar.example/inject":"true"}},'
        '"spec":{"tolerations":[{"key":"example.com/queue","operator":"Exists"}]}}}}'
    )
    kubectl("-n", ns, "apply", "--server-side", "--field-manager=other-controller", "-f", "-", input=theirs)
    time.sleep(12)  # two periodic passes (5 s in this suite) and the change's watch event
    dep = apps.read_namespaced_deployment("shared", ns)
    assert dep.metadata.labels["team"] == "x"
    assert dep.spec.template.metadata.annotations["sidecar.example/inject"] == "true"
    assert {"example.com/queue"} <= {t.key for t in dep.spec.template.spec.tolerations or []}
    assert dep.metadata.labels["app.kubernetes.io/managed-by"] == "llmops-operator"  # ours intact
    assert not events(core, ns, "shared", "Repaired")
    managers = {m.manager for m in dep.metadata.managed_fields}
    assert {"llmops-operator", "other-controller"} <= managers
    ie = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "shared")
    # our status writes name us too, not the HTTP library
    assert {m["manager"] for m in ie["metadata"]["managedFields"] if m.get("subresource") == "status"} == {
        "llmops-operator"
    }


def test_a_same_named_object_is_never_adopted_and_survives_the_endpoint(cluster):
    ns, custom, core, _apps = cluster
    core.create_namespaced_service(
        ns, {"metadata": {"name": "taken"}, "spec": {"ports": [{"port": 5432}], "selector": {"app": "db"}}}
    )
    endpoint(custom, ns, "taken")

    def conflict():
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "taken")
        c = condition(obj, "Stalled")
        return c.get("reason") == "NameConflict" and c

    c = wait(conflict, 60, "Stalled NameConflict")
    assert "Service/taken" in c["message"]
    svc = core.read_namespaced_service("taken", ns)
    assert svc.spec.ports[0].port == 5432 and not svc.metadata.owner_references  # untouched
    assert events(core, ns, "taken", "NameConflict")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "taken")
    time.sleep(5)  # the garbage collector's turn
    assert core.read_namespaced_service("taken", ns).spec.ports[0].port == 5432


def test_the_periodic_pass_repairs_unwatched_children_and_says_so(cluster):
    """Roles are not watched: the periodic pass restores a deleted one, and its Event is written."""
    ns, custom, _core, _apps = cluster
    from kubernetes import client

    doc = example("tiny-cpu-training.yaml", ns)
    doc["metadata"]["name"] = "roles"
    doc["spec"]["output"] = {"location": "pvc://roles-checkpoints/model"}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc)
    rbac = client.RbacAuthorizationV1Api()
    wait(lambda: rbac.read_namespaced_role("roles-progress-writer", ns), 60, "the Role")
    rbac.delete_namespaced_role("roles-progress-writer", ns)
    wait(lambda: rbac.read_namespaced_role("roles-progress-writer", ns), 60, "the Role restored")
    core = client.CoreV1Api()
    wait(lambda: events(core, ns, "roles", "Repaired"), 30, "a Repaired event from the periodic pass")
