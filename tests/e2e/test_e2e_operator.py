"""What the emulator cannot show: CEL transition rules, pruning, server-side dry run, garbage collection.

Needs: the CRDs (manifests/crds) and the Kubeflow training operator installed; see docs/e2e.md.
"""

from __future__ import annotations

import os

import pytest
from e2e_cluster import GROUP, VERSION, InThread, clients, condition, namespace, wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TJ = {
    "apiVersion": "llmops.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "tiny"},
    "spec": {
        "model": {"preset": "tiny"},
        "data": {"train": "/opt/llmops/data/corpus.txt"},
        "hyperparameters": {"maxSteps": 20},
        "resources": {"accelerator": "cpu", "acceleratorsPerNode": 1, "cpu": "1", "memory": "1Gi"},
        "checkpoint": {"volumeClaim": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
        "output": {"location": "pvc://tiny-checkpoints/model"},
    },
}


@pytest.fixture(scope="module")
def cluster():
    _api, custom, core, apps = clients()
    given = os.environ.get("LLMOPS_E2E_NAMESPACE")  # an existing namespace, kept afterwards
    ns = given or namespace(core)
    try:
        if os.environ.get("LLMOPS_E2E_EXTERNAL_OPERATOR"):
            yield ns, custom, core, apps
        else:
            with InThread(ns):
                yield ns, custom, core, apps
    finally:
        if not given:
            core.delete_namespace(ns)


def get_tj(custom, ns, name="tiny"):
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", name)


def test_children_owner_references_and_garbage_collection(cluster):
    ns, custom, core, _apps = cluster
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", TJ)
    job = wait(
        lambda: custom.get_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", "tiny"),
        what="PyTorchJob",
    )
    assert job["metadata"]["ownerReferences"][0]["controller"] is True
    wait(lambda: condition(get_tj(custom, ns), "Stalled").get("status") == "False", what="Stalled=False")
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", "tiny", propagation_policy="Foreground"
    )

    def gone():
        try:
            core.read_namespaced_config_map("tiny-config", ns)
        except Exception as e:
            return getattr(e, "status", None) == 404
        return False

    wait(gone, what="children garbage-collected")


def test_cel_rejects_an_immutable_edit(cluster):
    from kubernetes.client.exceptions import ApiException

    ns, custom, _core, _apps = cluster
    doc = {
        **TJ,
        "metadata": {"name": "cel"},
        "spec": {**TJ["spec"], "output": {"location": "pvc://cel-checkpoints/model"}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc)
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "trainingjobs", "cel", {"spec": {"hyperparameters": {"maxSteps": 99}}}
        )
    assert e.value.status == 422
    # suspend stays editable
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", "cel", {"spec": {"runPolicy": {"suspend": True}}}
    )
    wait(
        lambda: custom.get_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", "cel")["spec"][
            "runPolicy"
        ].get("suspend"),
        what="suspend patched through",
    )


def test_unknown_fields_are_pruned_and_dry_run_stores_nothing(cluster):
    ns, custom, _core, _apps = cluster
    doc = {
        **TJ,
        "metadata": {"name": "pruned"},
        "spec": {**TJ["spec"], "bogus": 1, "output": {"location": "pvc://pruned-checkpoints/model"}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc, dry_run="All")
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException):
        get_tj(custom, ns, "pruned")
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc)
    assert "bogus" not in get_tj(custom, ns, "pruned")["spec"]


def test_endpoint_gets_an_owned_deployment_and_its_url(cluster):
    ns, custom, _core, apps = cluster
    ep = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": "chat"},
        "spec": {
            "model": {"location": "/opt/llmops/model"},
            "runtime": "llmops",
            "resources": {"accelerator": "cpu"},
        },
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", ep)
    dep = wait(lambda: apps.read_namespaced_deployment("chat", ns), what="Deployment")
    assert dep.metadata.owner_references[0].kind == "InferenceEndpoint"
    obj = wait(
        lambda: (
            (o := custom.get_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "chat"))
            .get("status", {})
            .get("url")
            and o
        ),
        what="status.url",
    )
    assert obj["status"]["url"] == f"http://chat.{ns}.svc.cluster.local"
