"""What keeps a pass cheap must not change what a pass does: the render cache, echo events, kopf's
diff base for children, the skipped first read of a PyTorchJob, and the emulator the tests run on."""

from __future__ import annotations

import asyncio
import copy
import json

import kmock
import pytest
from lean_emulator import LeanEmulator, declare
from op_harness import PTJ, TJ_API, condition, eventually, running, training_job

from llmops_core import api
from llmops_operator import render
from llmops_operator.controller import cache, children, desired, kube, serial, settings

pytestmark = pytest.mark.timeout(60)


def test_render_reads_no_parent_labels_or_annotations():
    """The desired-children cache keys on identity and spec only; this keeps that sound."""
    doc = copy.deepcopy(training_job("tiny"))
    doc["metadata"]["namespace"] = "default"
    plain = render.render(api.load(doc), settings.config())
    doc["metadata"]["labels"] = {"team": "a"}
    doc["metadata"]["annotations"] = {"llmops.dev/last-handled-configuration": "{}", "note": "x"}
    assert render.render(api.load(doc), settings.config()) == plain


def test_desired_children_are_rendered_once_per_spec():
    desired.clear()
    config = settings.config()
    calls = []

    def build():
        calls.append(1)
        return [{"kind": "ConfigMap"}]

    body = {
        "apiVersion": "v",
        "kind": "K",
        "metadata": {"namespace": "n", "name": "a", "uid": "1"},
        "spec": {"x": 1},
    }
    first = desired.children(body, config, build)
    first[0]["kind"] = "changed by its caller"  # each call gets its own copy
    annotated = {**body, "metadata": {**body["metadata"], "annotations": {"kopf": "state"}}}
    assert desired.children(annotated, config, build) == [{"kind": "ConfigMap"}] and len(calls) == 1
    desired.children({**body, "spec": {"x": 2}}, config, build)
    assert len(calls) == 2
    desired.children(body, config, build, resolved="s3://b/m")
    assert len(calls) == 3
    other_config = config.model_copy()
    desired.children(body, other_config, build)
    assert len(calls) == 4


def test_an_echo_of_our_own_write_is_not_news():
    cache.clear()
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": "n", "name": "c"},
        "data": {"a": "1"},
    }
    cache.remember(copy.deepcopy(obj))
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(obj)}) is False
    edited = copy.deepcopy(obj)
    edited["data"]["a"] = "2"
    assert cache.observe({"type": "MODIFIED", "object": edited}) is True
    assert cache.seen("v1", "ConfigMap", "n", "c")["data"] == {"a": "2"}
    assert cache.observe({"type": "DELETED", "object": edited}) is True
    assert cache.seen("v1", "ConfigMap", "n", "c") is None


def test_the_watch_echo_of_a_create_is_not_news_though_json_shared_its_keys():
    """A watch event is decoded whole, so json shares the key "type" between the event and a Service's
    ``spec.type``; marshal writes such a shared string differently. The echo still equals the create's
    response, and starts no pass (each Service, autoscaler and budget did before)."""
    cache.clear()
    service = {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": "s", "namespace": "n", "resourceVersion": "5"},
        "spec": {"type": "ClusterIP", "ports": [{"port": 80}]},
    }
    cache.remember(json.loads(json.dumps(service)))  # the POST's response
    event = json.loads(json.dumps({"type": "ADDED", "object": service}))  # the watch's line
    assert cache.observe(event) is False
    event["object"]["spec"]["type"] = "NodePort"
    assert cache.observe(event) is True


def test_a_child_seen_while_our_create_is_in_flight_is_not_news():
    """The watch may bring a new child before its create's response: that is the echo of the create,
    which the pass making it reads. The same event with no create in flight is news."""
    cache.clear()
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    with cache.creating(child):
        assert cache.observe({"type": "ADDED", "object": copy.deepcopy(child)}) is False
    assert cache.seen("v1", "ConfigMap", "n", "c") == child
    cache.forget(child)
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(child)}) is True
    cache.clear()


def test_status_changes_no_pass_reads_are_not_news():
    """A training pod is held only once it fails (retries read failed pods alone): its creation,
    scheduling and progress start no pass, nor does Kubeflow's bookkeeping on a PyTorchJob or a new
    resourceVersion alone; a failed pod, its deletion and a PyTorchJob condition do."""
    cache.clear()
    labels = {"llmops.dev/trainingjob": "j"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "n", "labels": labels, "resourceVersion": "1"},
        "spec": {"containers": [{"name": "pytorch"}]},
        "status": {"phase": "Pending"},
    }
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(pod)}) is False
    for rv, phase in (("2", "Pending"), ("3", "Running"), ("4", "Succeeded")):
        pod["metadata"]["resourceVersion"], pod["status"]["phase"] = rv, phase
        pod["spec"]["nodeName"] = "node-1"
        assert cache.observe({"type": "MODIFIED", "object": copy.deepcopy(pod)}) is False, phase
    assert cache.observe({"type": "DELETED", "object": copy.deepcopy(pod)}) is False
    assert cache.of_kind("v1", "Pod", "n") == []
    terminated = {"name": "pytorch", "state": {"terminated": {"exitCode": 137}}}
    pod["status"] = failed = {"phase": "Failed", "containerStatuses": [terminated]}
    assert cache.observe({"type": "MODIFIED", "object": copy.deepcopy(pod)}) is True
    assert cache.of_kind("v1", "Pod", "n", parent="llmops.dev/trainingjob=j")[0]["status"] == failed
    pod["metadata"]["resourceVersion"] = "5"
    assert cache.observe({"type": "MODIFIED", "object": copy.deepcopy(pod)}) is False
    assert cache.observe({"type": "DELETED", "object": copy.deepcopy(pod)}) is True

    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "j", "namespace": "n", "labels": labels, "resourceVersion": "1"},
        "status": {"conditions": [{"type": "Created", "status": "True"}], "lastReconcileTime": "t1"},
    }
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(job)}) is True
    job["metadata"]["resourceVersion"], job["status"]["lastReconcileTime"] = "2", "t2"
    job["status"]["replicaStatuses"] = {"Master": {"active": 1}}
    assert cache.observe({"type": "MODIFIED", "object": copy.deepcopy(job)}) is False
    job["status"]["conditions"].append({"type": "Running", "status": "True"})
    assert cache.observe({"type": "MODIFIED", "object": copy.deepcopy(job)}) is True
    assert cache.seen("kubeflow.org/v1", "PyTorchJob", "n", "j")["status"] == {
        "conditions": job["status"]["conditions"]
    }
    cache.clear()


def test_a_failed_pod_deleted_or_replaced_is_kept_until_a_pass_reads_it():
    """Kubeflow deletes a pod that exits retryably and creates its replacement under the same name.
    The failed pod stays readable, as gone, until its parent's pass settles it; a relist that no
    longer finds it keeps it too."""
    cache.clear()
    parent = "llmops.dev/trainingjob=j"
    terminated = {"name": "pytorch", "state": {"terminated": {"exitCode": 143}}}

    def pod(uid, phase):
        meta = {"name": "j-master-0", "namespace": "n", "uid": uid, "labels": {"llmops.dev/trainingjob": "j"}}
        status = {"phase": phase, "containerStatuses": [terminated] if phase == "Failed" else []}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}

    assert cache.observe({"type": "MODIFIED", "object": pod("a", "Failed")}) is True
    assert cache.observe({"type": "DELETED", "object": pod("a", "Failed")}) is True
    assert cache.observe({"type": "DELETED", "object": pod("a", "Failed")}) is False
    assert cache.observe({"type": "ADDED", "object": pod("b", "Pending")}) is False
    assert [p["metadata"]["uid"] for p in cache.gone("n", parent)] == ["a"]
    assert cache.observe({"type": "MODIFIED", "object": pod("b", "Failed")}) is True
    # the watch missed b's deletion; the relist finds its replacement c under the same name
    assert cache.observe({"type": "MODIFIED", "object": pod("c", "Running")}) is True
    read = cache.gone("n", parent)
    assert [p["metadata"]["uid"] for p in read] == ["a", "b"]
    assert cache.of_kind("v1", "Pod", "n") == []
    assert cache.observe({"type": "MODIFIED", "object": pod("c", "Failed")}) is True
    assert cache.observe({"type": "DELETED", "object": pod("c", "Failed")}) is True  # after the read
    cache.settle("n", parent, read)
    assert [p["metadata"]["uid"] for p in cache.gone("n", parent)] == ["c"]
    cache.settle("n", parent)  # the job is deleted or finished
    assert cache.gone("n", parent) == []
    cache.clear()


@pytest.mark.parametrize("kind", ["HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment"])
def test_a_status_update_is_news_only_for_children_whose_status_a_pass_reads(kind):
    """The autoscaler's, budget's and Service's status updates start no pass; a Deployment's do (the
    endpoint mirrors it), and a spec edit of any of them does (drift is repaired)."""
    cache.clear()
    obj = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"namespace": "n", "name": "c", "resourceVersion": "1"},
        "spec": {"minAvailable": 1},
        "status": {"currentHealthy": 0},
    }
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(obj)}) is True
    settled = copy.deepcopy(obj)
    settled["metadata"]["resourceVersion"], settled["status"]["currentHealthy"] = "2", 2
    assert cache.observe({"type": "MODIFIED", "object": settled}) is (kind == "Deployment")
    edited = copy.deepcopy(settled)
    edited["metadata"]["resourceVersion"], edited["spec"]["minAvailable"] = "3", 0
    assert cache.observe({"type": "MODIFIED", "object": edited}) is True
    assert cache.seen("v1", kind, "n", "c")["spec"] == {"minAvailable": 0}


async def test_ensure_never_takes_over_what_it_does_not_own_and_leaves_create_only_children_alone():
    """A same-named object without our controller reference is reported, never patched, however it
    was found (the 409 read or the cache); a create-only child is never changed once it exists."""
    emu = LeanEmulator()
    declare(emu)
    async with emu, kmock.Server(emu) as server:
        kube.configure(kube.Connection(server=str(server.url)))
        owner = {
            "apiVersion": "llmops.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "o", "namespace": "default", "uid": "u1"},
        }
        child = children.adopt(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}, owner
        )
        action, _ = await children.ensure(copy.deepcopy(child), None)
        assert action == "created"
        changed = copy.deepcopy(child)
        changed["data"]["a"] = "2"
        assert (await children.ensure(copy.deepcopy(changed), None, create_only=True))[0] == "unchanged"
        assert (await kube.get(children.url_of(child)))["data"] == {"a": "1"}
        other = {**owner, "metadata": {**owner["metadata"], "uid": "u2"}}
        theirs = children.adopt(copy.deepcopy(changed), other)
        with pytest.raises(children.NotOurs):
            await children.ensure(copy.deepcopy(theirs), None)  # create -> 409 -> read: not ours
        found = await kube.get(children.url_of(child))
        with pytest.raises(children.NotOurs):
            await children.ensure(copy.deepcopy(theirs), found)  # from the cache
        assert (await kube.get(children.url_of(child)))["data"] == {"a": "1"}  # untouched
        assert (await children.ensure(copy.deepcopy(changed), None))[0] == "updated"
        assert (await kube.get(children.url_of(child)))["data"] == {"a": "2"}
        await kube.close()


async def test_a_leftover_pytorchjob_of_another_parent_is_reported_and_left_alone():
    """A new TrainingJob whose PyTorchJob name is taken by the job of an earlier TrainingJob of the
    same name (no garbage collector here): a name conflict, reported; the old job is left alone."""
    async with running() as (cluster, op, _emu):
        await cluster.create(training_job("tiny"))
        old = await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")

        async def settled():  # the first operator's pass is over: its status, the last write, is there
            obj = await cluster.get(*TJ_API, "tiny")
            status = obj.get("status") or {}
            return condition(obj, "Stalled").get("status") == "False" and status.get("children")

        await eventually(settled, what="the first pass written")
        await op.stop()
        await cluster.delete(*TJ_API, "tiny")  # the emulator has no garbage collector: the job stays
        changed = training_job(
            "tiny", hyperparameters={"maxSteps": 500, "batchSize": 8, "sequenceLength": 128}
        )
        await cluster.create(changed)
        await op.start()

        async def stalled():
            obj = await cluster.get(*TJ_API, "tiny")
            c = condition(obj, "Stalled")
            assert c.get("reason") == "NameConflict", obj.get("status")  # shown if it times out
            return c

        c = await eventually(stalled, what="Stalled NameConflict")
        assert "not owned by this resource" in c["message"] and "(and 6 more)" in c["message"]
        assert (await cluster.get(*PTJ, "tiny"))["spec"] == old["spec"]


async def test_a_parent_is_written_only_through_its_status():
    """kopf keeps its diff base in memory (controller/kopfstate.py): a parent's passes write its status
    and nothing else on it, so kopf's annotations cost no PATCH (and no watch event back)."""
    async with running() as (cluster, _op, emu):
        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")

        async def settled():
            obj = await cluster.get(*TJ_API, "tiny")
            return condition(obj, "Stalled").get("status") == "False" and obj

        obj = await eventually(settled, what="the first pass written")
        await asyncio.sleep(0.5)  # anything kopf would write after the handler
        writes = [
            path for method, path, _ in emu.log if method in ("PATCH", "PUT") and "/trainingjobs/" in path
        ]
        assert writes and all(path.endswith("/tiny/status") for path in writes), writes
        assert not [k for k in obj["metadata"].get("annotations") or {} if k.startswith("llmops.dev/")]


async def test_lean_emulator_answers_like_a_kubernetes_api():
    emu = LeanEmulator()
    declare(emu)
    async with emu, kmock.Server(emu) as server:
        kube.configure(kube.Connection(server=str(server.url)))
        url = kube.path("v1", "configmaps", "default")
        a = await kube.create(
            url, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}}
        )
        b = await kube.create(
            url,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"generateName": "b-", "namespace": "default"},
            },
        )
        assert b["metadata"]["name"].startswith("b-") and len(b["metadata"]["name"]) == 7
        with pytest.raises(kube.ApiError) as e:
            await kube.create(
                url,
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"}},
            )
        assert e.value.status == 409
        patched = await kube.patch(kube.path("v1", "configmaps", "default", "a"), {"data": {"k": "v"}})
        assert int(patched["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
        assert (await kube.get(kube.path("v1", "configmaps", "default", "a")))["data"] == {"k": "v"}
        assert await kube.get(kube.path("v1", "configmaps", "default", "missing")) is None
        assert await kube.get(kube.path("v1", "configmaps", "other", "a")) is None
        names = {o["metadata"]["name"] for o in await kube.list_(url)}
        assert names == {"a", b["metadata"]["name"]}
        assert await kube.list_(kube.path("v1", "configmaps", "other")) == []
        assert len(await kube.list_("/api/v1/configmaps")) == 2  # all namespaces
        assert len(emu) >= 9 and len(emu["get"]) >= 5  # the request history stays readable
        await kube.close()


async def test_child_lists_and_watches_are_filtered_by_the_api_server():
    """Every child kind is listed and watched with our label selector, so the operator never receives
    the cluster's other ConfigMaps, Services, Deployments or pods; and training pods only once failed."""
    async with running() as (cluster, _op, emu):
        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        from urllib.parse import parse_qs

        reads = [
            (path, parse_qs(query))
            for method, path, query in emu.log
            if method == "GET" and path.rstrip("/").split("/")[-1] in CHILD_PLURALS
        ]
        kinds = {path.rstrip("/").split("/")[-1] for path, _ in reads}
        assert kinds == CHILD_PLURALS, kinds  # each kind listed/watched
        ours = "app.kubernetes.io/managed-by=llmops-operator"
        for path, query in reads:
            pods = path.endswith("/pods")
            wanted = f"{ours},app.kubernetes.io/component=training" if pods else ours
            assert query.get("labelSelector") == [wanted], path
            assert query.get("fieldSelector") == (["status.phase=Failed"] if pods else None), path


CHILD_PLURALS = {
    "pytorchjobs",
    "deployments",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "services",
    "configmaps",
    "pods",
}


def _managed_fields() -> list[dict]:
    return [{"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]


def test_the_cache_holds_only_what_a_pass_reads():
    """No managedFields on any kind; a Pod without its spec; a PyTorchJob's spec only its runPolicy.
    Checked on the bytes held, whichever way an object arrives (a watch event, a write's answer)."""
    cache.clear()
    meta = {"namespace": "n", "labels": {"llmops.dev/trainingjob": "j"}, "managedFields": _managed_fields()}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**meta, "name": "d"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server"}]}}},
        "status": {"readyReplicas": 1},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**meta, "name": "p"},
        "spec": {"containers": [{"name": "trainer", "env": [{"name": "SECRET_FREE", "value": "x"}]}]},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "trainer"}]},
    }
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {**meta, "name": "j"},
        "spec": {"runPolicy": {"suspend": False}, "pytorchReplicaSpecs": {"Master": {"replicas": 1}}},
        "status": {"conditions": [{"type": "Running", "status": "True"}]},
    }
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(deployment)})
    assert cache.observe({"type": "ADDED", "object": copy.deepcopy(pod)})
    cache.remember(copy.deepcopy(job))
    held = [blob for bucket in cache._store.values() for _, blob in bucket.values()]
    assert len(held) == 3 and not any(b"managedFields" in blob for blob in held)
    assert not any(b"pytorchReplicaSpecs" in blob or b"SECRET_FREE" in blob for blob in held)

    got = cache.seen("apps/v1", "Deployment", "n", "d")
    assert got["spec"] == deployment["spec"] and got["status"] == deployment["status"]
    assert "managedFields" not in got["metadata"] and got["metadata"]["labels"] == meta["labels"]
    got_pod = cache.of_kind("v1", "Pod", "n", parent="llmops.dev/trainingjob=j")
    assert [p["status"] for p in got_pod] == [pod["status"]] and "spec" not in got_pod[0]
    assert cache.of_kind("v1", "Pod", "n", parent="llmops.dev/trainingjob=other") == []
    assert cache.seen("kubeflow.org/v1", "PyTorchJob", "n", "j")["spec"] == {"runPolicy": {"suspend": False}}

    got["spec"]["replicas"] = 9  # a reader's copy is its own
    assert cache.seen("apps/v1", "Deployment", "n", "d")["spec"]["replicas"] == 2
    # the echo of an object differs from the cached one in managedFields alone: not news
    echo = copy.deepcopy(deployment)
    echo["metadata"]["managedFields"] = [*_managed_fields(), {"manager": "other"}]
    assert cache.observe({"type": "MODIFIED", "object": echo}) is False
    cache.clear()


async def test_at_most_max_concurrent_passes_run_at_once(monkeypatch):
    monkeypatch.setattr(settings.TUNABLES, "max_concurrent_passes", 2)
    monkeypatch.setattr(serial, "_slots", {})
    running, most = 0, 0

    async def one_pass():
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return True

    results = await asyncio.gather(*(serial.coalesced(("K", "ns", str(i)), one_pass) for i in range(6)))
    assert results == [True] * 6 and most == 2
