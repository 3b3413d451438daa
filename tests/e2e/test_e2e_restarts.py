"""The restart story on the real training operator: retryable exits (128-255: preemption, OOM) are
retried and counted; past runPolicy.backoffLimit the operator stops the job as Failed (Kubeflow alone
would retry them forever under restartPolicy ExitCode); a permanent exit fails it at once, saying why."""

from __future__ import annotations

import pytest
from e2e_cluster import GROUP, VERSION, condition, example, exit_pod, job_pods, kubectl, running, scope, wait

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def cluster():
    with scope() as s:
        yield s


def tj(custom, ns, name):
    return custom.get_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", name)


def create(custom, ns, name, backoff_limit):
    doc = example("tiny-cpu-training.yaml", ns)
    doc["metadata"]["name"] = name
    doc["spec"]["output"] = {"location": f"pvc://{name}-checkpoints/model"}
    doc["spec"]["runPolicy"] = {"backoffLimit": backoff_limit}
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingjobs", doc)


def next_pod(core, ns, name, after=None):
    def found():
        p = job_pods(core, ns, name)
        return running(p) and p[0].metadata.uid != after and p[0]

    return wait(found, 180, "a Running training pod")


def test_retryable_exits_are_counted_and_the_budget_ends_the_job(cluster):
    ns, custom, core, _apps = cluster
    create(custom, ns, "budget", backoff_limit=1)
    first = next_pod(core, ns, "budget")
    exit_pod(core, ns, first.metadata.name, 143)  # preempted: checkpointed on SIGTERM
    second = next_pod(core, ns, "budget", after=first.metadata.uid)
    assert second.metadata.name == first.metadata.name  # replaced under its name: retries go by uid
    retries = wait(
        lambda: (tj(custom, ns, "budget").get("status") or {}).get("retries"), 60, "a retry recorded"
    )
    assert [r["exitCode"] for r in retries] == [143]
    assert (tj(custom, ns, "budget")["status"]).get("phase") != "Failed"
    exit_pod(core, ns, second.metadata.name, 137)  # OOM-killed: the second retryable exit, limit 1

    def failed():
        st = tj(custom, ns, "budget").get("status") or {}
        return st.get("phase") == "Failed" and st

    st = wait(failed, 120, "Failed after the retry budget")
    stalled = condition({"status": st}, "Stalled")
    assert stalled["reason"] == "RetryBudgetExhausted" and "exited 137" in stalled["message"]
    job = custom.get_namespaced_custom_object("kubeflow.org", "v1", ns, "pytorchjobs", "budget")
    assert job["spec"]["runPolicy"]["suspend"] is True  # stopped: no third pod
    kubectl("-n", ns, "wait", "--for=condition=Stalled", "trainingjob/budget", "--timeout=30s")


def test_a_permanent_exit_fails_at_once_and_names_the_exit(cluster):
    ns, custom, core, _apps = cluster
    create(custom, ns, "badinput", backoff_limit=3)
    pod = next_pod(core, ns, "badinput")
    exit_pod(core, ns, pod.metadata.name, 3)  # the trainer's code for bad input: never retried

    def failed():
        st = tj(custom, ns, "badinput").get("status") or {}
        return st.get("phase") == "Failed" and st

    st = wait(failed, 120, "Failed")
    assert "exited 3" in condition({"status": st}, "Succeeded")["message"]
    assert not st.get("retries")
