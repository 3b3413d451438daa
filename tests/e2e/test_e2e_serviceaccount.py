"""Issue 10 (7): the operator authenticated exactly as in a pod: a ServiceAccount token from the
TokenRequest API in the in-cluster file, KUBERNETES_SERVICE_HOST/PORT, no kubeconfig, and only the
rights of the ClusterRole in manifests/install.yaml, so the real RBAC refuses anything not granted. The
OwnerReferencesPermissionEnforcement admission plugin is on in the simulated API server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from e2e_cluster import GROUP, VERSION, example, exit_pod, job_pods, running, scope, wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
OPERATOR = "operator-e2e-sa"


def cluster_handle(e2e_cluster):
    from llmops.dev import simulated

    if e2e_cluster is not None:
        return e2e_cluster
    kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
    return simulated.Cluster(kubeconfig=kubeconfig, kubectl=shutil.which("kubectl"))


@pytest.fixture(scope="module")
def sa(e2e_cluster):
    """(namespace, custom, core, apps, a client logged in as the operator's ServiceAccount)."""
    from kubernetes import client

    from llmops.dev import simulated

    c = cluster_handle(e2e_cluster)
    creds = simulated.operator_credentials(c)
    host, port = c.server()
    conf = client.Configuration()
    conf.host = f"https://{host}:{port}"
    conf.ssl_ca_cert = str(creds / "ca.crt")
    conf.api_key = {"authorization": "Bearer " + (creds / "token").read_text()}
    with scope(operator=False) as s:
        yield (*s, client.ApiClient(conf), c)


def status_of(e):
    return getattr(e, "status", None)


def test_the_token_has_exactly_the_clusterroles_rights(sa):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns, _custom, _core, _apps, as_sa, _c = sa
    client.CustomObjectsApi(as_sa).list_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs")
    client.AppsV1Api(as_sa).list_namespaced_deployment(ns)
    for call in (
        lambda: client.CoreV1Api(as_sa).list_namespaced_secret(ns),
        lambda: client.AppsV1Api(as_sa).delete_collection_namespaced_deployment(ns),
        lambda: client.CoreV1Api(as_sa).create_namespace({"metadata": {"name": "not-allowed"}}),
    ):
        with pytest.raises(ApiException) as e:
            call()
        assert e.value.status == 403


@pytest.mark.parametrize(
    "plural,kind", [("trainingjobs", "TrainingJob"), ("inferenceendpoints", "InferenceEndpoint")]
)
def test_children_with_block_owner_deletion_are_allowed(sa, plural, kind):
    """Issue 11, 4: under OwnerReferencesPermissionEnforcement, blockOwnerDeletion needs update on
    the owner's /finalizers; the operator sets it on every child."""
    from kubernetes import client

    ns, custom, _core, _apps, as_sa, _c = sa
    doc = example("tiny-cpu-training.yaml" if kind == "TrainingJob" else "cpu-endpoint.yaml", ns)
    doc["metadata"]["name"] = f"owner-{plural}"
    owner = custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, doc)
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    client.CoreV1Api(as_sa).create_namespaced_config_map(
        ns, {"metadata": {"name": f"child-{plural}", "ownerReferences": [ref]}, "data": {}}
    )


def test_the_operator_logs_in_as_in_a_pod_and_reconciles(sa):
    """Issue 11, 1: the in-cluster token must not be sent as "Bearer bearer <jwt>"."""
    from llmops.dev import simulated

    ns, custom, core, apps, _as_sa, c = sa
    simulated.start_operator(c, namespaces=[ns], name=OPERATOR, log=lambda _m: None)
    try:
        tj = example("tiny-cpu-training.yaml", ns)
        ep = example("cpu-endpoint.yaml", ns)
        ep["spec"]["model"] = {"location": "/opt/llmops/model"}
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", tj)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "inferenceendpoints", ep)
        name, ename = tj["metadata"]["name"], ep["metadata"]["name"]

        def up() -> bool:
            assert simulated.alive(OPERATOR), "the operator exited"
            text = log_tail(10_000)
            assert "LoginError" not in text, "the operator cannot log in (kopf LoginError)"
            assert "Unauthorized" not in text, "the API server refused the operator's credentials (401)"
            return True

        def tj_phase():
            assert simulated.alive(OPERATOR), "the operator exited: " + log_tail()
            return (
                custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", name).get("status")
                or {}
            ).get("phase")

        wait(
            lambda: running(job_pods(core, ns, name)), 180, "training pods Running (children made as the SA)"
        )
        wait(lambda: tj_phase() == "Running", 120, "TrainingJob Running")
        wait(lambda: apps.read_namespaced_deployment(ename, ns), 120, "the endpoint's Deployment")
        for p in job_pods(core, ns, name):
            exit_pod(core, ns, p.metadata.name, 0)
        wait(lambda: tj_phase() == "Succeeded", 180, "TrainingJob Succeeded")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- operator log ---\n{log_tail()}") from None
    finally:
        simulated.stop(OPERATOR)


def log_tail(lines: int = 30) -> str:
    from llmops.dev import simulated

    f = simulated.home() / "run" / f"{OPERATOR}.log"
    return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else "(no log)"
