"""Issue 10 (6): drift repair against the real API server and controllers, and an operator that
restarts in the middle of a reconcile."""

from __future__ import annotations

import pytest
from e2e_cluster import GROUP, VERSION, InThread, clients, example, missing, namespace, pods, running, wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ns():
    _api, _custom, core, _apps = clients()
    name = namespace(core)
    yield name
    core.delete_namespace(name)


def endpoint(ns: str, name: str) -> dict:
    doc = example("cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = name
    doc["spec"]["model"] = {"location": "/opt/llmops/model"}
    return doc


def test_deleted_and_edited_children_are_restored(ns):
    _api, custom, core, apps = clients()
    with InThread(ns):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "inferenceendpoints", endpoint(ns, "drift")
        )
        dep = wait(lambda: apps.read_namespaced_deployment("drift", ns), 120, "Deployment")
        wait(lambda: running(pods(core, ns, "app.kubernetes.io/instance=drift")), 180, "pods Running")

        apps.delete_namespaced_deployment("drift", ns)
        back = wait(
            lambda: (
                (d := apps.read_namespaced_deployment("drift", ns)).metadata.uid != dep.metadata.uid and d
            ),
            120,
            "a deleted Deployment re-created",
        )
        image = back.spec.template.spec.containers[0].image
        apps.patch_namespaced_deployment(
            "drift",
            ns,
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": back.spec.template.spec.containers[0].name,
                                    "image": "busybox:edited",
                                }
                            ]
                        }
                    }
                }
            },
        )
        wait(
            lambda: (
                apps.read_namespaced_deployment("drift", ns).spec.template.spec.containers[0].image == image
            ),
            120,
            "an edited Deployment repaired",
        )
        core.delete_namespaced_service("drift", ns)
        wait(lambda: core.read_namespaced_service("drift", ns), 120, "a deleted Service re-created")


def test_operator_restart_mid_reconcile_converges_without_duplicates(ns):
    _api, custom, core, _apps = clients()
    tj = example("tiny-cpu-training.yaml", ns)
    tj["metadata"]["name"] = "restart"
    tj["spec"]["output"] = {"location": "pvc://restart-checkpoints/model"}
    with InThread(ns):
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", tj)
        # stop as soon as the first child shows up: the pass is cut in the middle
        wait(
            lambda: (
                core.list_namespaced_config_map(ns, label_selector="app.kubernetes.io/instance=restart").items
                or not missing(
                    lambda: custom.get_namespaced_custom_object(
                        "kubeflow.org", "v1", ns, "pytorchjobs", "restart"
                    )
                )
            ),
            60,
            "the first child",
        )
    with InThread(ns):
        wait(
            lambda: (
                (
                    custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", "restart").get(
                        "status"
                    )
                    or {}
                ).get("phase")
                == "Running"
            ),
            240,
            "TrainingJob Running after the restart",
        )
        jobs = custom.list_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs")["items"]
        assert [j["metadata"]["name"] for j in jobs] == ["restart"]
        assert len(pods(core, ns, "training.kubeflow.org/job-name=restart")) == 1


def test_a_spec_changed_while_the_operator_was_down_is_applied_and_announced_as_an_update(ns):
    """kopf's diff base lives in the operator's memory (controller/kopfstate.py): the parent carries no
    kopf annotations; after a restart each parent is reconciled again, and observedGeneration tells an
    offline spec change (an "Updated" event) from drift (which would be "Repaired")."""
    _api, custom, core, apps = clients()

    def reconciled() -> dict:
        ie = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", "offline")
        status = ie.get("status") or {}
        return status.get("observedGeneration") == ie["metadata"]["generation"] and ie

    with InThread(ns):
        custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, "inferenceendpoints", endpoint(ns, "offline")
        )
        first = wait(reconciled, 120, "the first pass")
        wait(lambda: apps.read_namespaced_deployment("offline", ns), 60, "the Deployment")
    assert not [k for k in first["metadata"].get("annotations") or {} if k.startswith("llmops.dev/")]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, ns, "inferenceendpoints", "offline", {"spec": {"server": {"maxBatchSize": 8}}}
    )
    with InThread(ns):
        wait(reconciled, 120, "the changed spec reconciled after the restart")

        def batch_env() -> str | None:
            dep = apps.read_namespaced_deployment("offline", ns)
            env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env or []}
            return env.get("LLMOPS_MAX_BATCH_SIZE") == "8"

        wait(batch_env, 60, "the Deployment updated")
        reasons = {
            e.reason
            for e in core.list_namespaced_event(ns, field_selector="involvedObject.name=offline").items
        }
    assert "Updated" in reasons and "Repaired" not in reasons, reasons
