"""Pure logic: conditions, phase from the set of PyTorchJob conditions, ETA, child diffing, spec hashes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator

import aiohttp
import aiohttp.web
import kopf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmops_operator.controller import (
    cache,
    children,
    conditions,
    events,
    informer,
    kube,
    progress,
    retries,
    training,
)
from llmops_operator.controller.common import handle
from llmops_operator.controller.inference import replica_state, selector_string
from llmops_operator.controller.settings import TUNABLES, Tunables


def test_transition_time_changes_only_with_status():
    c1 = conditions.set_condition([], "Ready", False, "Pending", "a", at="t1")
    c2 = conditions.set_condition(c1, "Ready", False, "Pending", "b", at="t2")
    c3 = conditions.set_condition(c2, "Ready", True, "Running", "c", at="t3")
    assert c2[0]["lastTransitionTime"] == "t1" and c2[0]["message"] == "b"
    assert c3[0]["lastTransitionTime"] == "t3" and c3[0]["status"] == "True"
    assert len(c3) == 1


def test_conditions_are_a_list_map_keyed_by_type():
    out = conditions.set_condition([], "Stalled", False, "Reconciled", generation=4)
    out = conditions.set_condition(out, "Ready", "Unknown", "Pending", generation=4)
    assert [c["type"] for c in out] == ["Ready", "Stalled"]
    assert all(c["observedGeneration"] == 4 for c in out)


def job(*conds):
    return {"conditions": [{"type": t, "status": s} for t, s in conds]}


def test_phase_comes_from_the_set_not_the_last_condition():
    assert conditions.pytorchjob_phase(None) == "Pending"
    assert conditions.pytorchjob_phase(job(("Created", "True"))) == "Pending"
    assert conditions.pytorchjob_phase(job(("Running", "True"))) == "Running"
    assert conditions.pytorchjob_phase(job(("Succeeded", "True"), ("Running", "False"))) == "Succeeded"
    assert conditions.pytorchjob_phase(job(("Failed", "True"), ("Running", "True"))) == "Failed"
    assert conditions.pytorchjob_phase(job(("Running", "True"), ("Suspended", "True"))) == "Suspended"
    assert conditions.pytorchjob_phase(job(("Restarting", "True"))) == "Running"


@given(
    st.permutations([("Created", "True"), ("Running", "True"), ("Failed", "True"), ("Succeeded", "False")])
)
def test_phase_does_not_depend_on_order(conds):
    assert conditions.pytorchjob_phase(job(*conds)) == "Failed"


def test_a_job_started_when_it_began_running_not_when_kubeflow_accepted_it():
    accepted = "2026-01-01T00:00:00Z"
    ran = {"type": "Running", "status": "True", "lastTransitionTime": "2026-01-01T00:20:00Z"}
    assert (
        conditions.pytorchjob_started({"startTime": accepted, "conditions": [ran]})
        == ran["lastTransitionTime"]
    )
    # finished before we saw it run (its Running condition now False): Kubeflow's is the nearest record
    done = [{**ran, "status": "False", "lastTransitionTime": "2026-01-02T00:00:00Z"}]
    assert conditions.pytorchjob_started({"startTime": accepted, "conditions": done}) == accepted
    assert conditions.pytorchjob_started({}) is None


def test_eta_from_tokens_per_second_then_step_rate():
    assert progress.eta(50, 200, 1024, 1024) == "2m30s"
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    assert progress.eta(100, 400, None, None, t0, t0 + datetime.timedelta(minutes=10)) == "30m00s"
    assert progress.eta(10, None) is None
    assert progress.eta(200, 200) == "0s"
    assert progress.format_duration(4321) == "1h12m"


def test_progress_from_configmap_data():
    data = {"step": "50", "totalSteps": "200", "loss": "2.5", "tokensPerSecond": "1024", "loss2": "x"}
    out = progress.from_configmap(data, tokens_per_step=1024)
    assert out == {
        "step": 50,
        "totalSteps": 200,
        "loss": 2.5,
        "tokensPerSecond": 1024.0,
        "eta": "2m30s",
        "summary": "50/200",
    }
    assert progress.from_configmap({}) is None
    assert progress.from_configmap({"loss": "nan"}) is None
    assert progress.from_configmap({"step": "garbage"}) is None


def test_contains_ignores_server_additions_but_not_edits():
    desired = {"spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}}
    assert children.contains(
        {"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"a": "b"}}, "status": {}}, desired
    )
    assert not children.contains({"spec": {"ports": [{"port": 81}], "selector": {"a": "b"}}}, desired)
    assert not children.contains({"spec": {"ports": [], "selector": {"a": "b"}}}, desired)
    # the progress ConfigMap is rendered without data: the trainer's data is no drift
    assert children.contains({"metadata": {"name": "x"}, "data": {"step": "3"}}, {"metadata": {"name": "x"}})


def test_adopt_sets_owner_namespace_and_labels():
    owner = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u"},
    }
    child = children.adopt(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"x": "y"}}}, owner
    )
    assert child["metadata"]["namespace"] == "ns"
    assert child["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "llmops-operator", "x": "y"}
    assert child["metadata"]["ownerReferences"][0] == {
        "apiVersion": "llmops.dev/v1alpha1", "kind": "TrainingJob", "name": "t", "uid": "u",
        "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip


def test_spec_hashes_leave_run_policy_mutable():
    a = training.spec_hashes({"model": {"preset": "tiny"}, "runPolicy": {"suspend": False}})
    b = training.spec_hashes({"model": {"preset": "tiny"}, "runPolicy": {"suspend": True}})
    c = training.spec_hashes({"model": {"preset": "small"}, "runPolicy": {"suspend": True}})
    assert a == b
    assert training.changed_fields(b, c) == ["spec.model"]


def test_replica_state_and_selector():
    assert replica_state(None, 2)[:3] == ("Pending", False, "Progressing")
    dep = {"spec": {"replicas": 3}, "status": {"readyReplicas": 1}}
    assert replica_state(dep, 2)[0] == "Progressing"
    done = {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "observedGeneration": 4}
    dep = {"metadata": {"generation": 4}, "spec": {}, "status": done}
    assert replica_state(dep, 2)[:3] == ("Ready", True, "Available")
    # a rollout in progress is not Ready, though every old replica still serves
    rolling = {**dep, "status": {**done, "updatedReplicas": 1}}
    assert replica_state(rolling, 2)[:2] == ("Progressing", False)
    unseen = {**dep, "metadata": {"generation": 5}}  # the controller has not seen the new spec yet
    assert replica_state(unseen, 2)[1] is False
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "m"}
    failed = {**dep, "status": {**done, "conditions": [stuck]}}
    assert replica_state(failed, 2)[:3] == ("Degraded", False, "RolloutFailed")
    # a Deployment below replicas.min (before its autoscaler acts, or scaled down by hand) is not
    # Ready, though every replica it asks for runs
    below = {"metadata": {"generation": 4}, "spec": {"replicas": 1}, "status": {**done, "readyReplicas": 1}}
    assert (
        replica_state(below, 2)[:2] == ("Progressing", False)
        and replica_state(below, 2)[3] == "1/2 replicas ready"
    )
    assert replica_state(below, 1)[:2] == ("Ready", True)
    assert selector_string({"b": "2", "a": "1"}) == "a=1,b=2"


def test_kube_paths_plurals_and_recorded_calls():
    assert kube.path("v1", "configmaps", "ns", "c") == "/api/v1/namespaces/ns/configmaps/c"
    assert kube.path("apps/v1", "deployments", "ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert kube.path("llmops.dev/v1alpha1", "trainingjobs", "ns", "t", "status").endswith(
        "/trainingjobs/t/status"
    )
    assert kube.plural("PodDisruptionBudget") == "poddisruptionbudgets"
    assert kube.plural("HorizontalPodAutoscaler") == "horizontalpodautoscalers"
    assert kube.plural("PyTorchJob") == "pytorchjobs"
    kube._record("PATCH", "/apis/llmops.dev/v1alpha1/namespaces/ns/trainingjobs/t/status", None)
    kube._record("GET", "/apis/kubeflow.org/v1", None)  # discovery: not a resource call
    assert ("patch", "llmops.dev", "trainingjobs", "status") in kube.CALLS
    assert not any(c[1] == "kubeflow.org" and c[2] == "" for c in kube.CALLS)


def test_contains_reads_children_as_the_api_server_writes_them_back():
    desired = {
        "resources": {"limits": {"cpu": "0.5", "memory": "1024Mi"}, "requests": {"cpu": 2}},
        "volumes": [{"emptyDir": {"sizeLimit": "1.5Gi"}}],
        "target": {"averageValue": "2.5"},
        "nodeSelector": {},
        "tolerations": [],
        "env": [{"name": "A", "value": "0.5"}],
    }
    canonical = {
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "2"}},
        "volumes": [{"emptyDir": {"sizeLimit": "1536Mi"}}],
        "target": {"averageValue": "2500m"},
        "env": [{"name": "A", "value": "0.5"}],
    }
    assert children.contains(canonical, desired)
    assert not children.contains(
        {**canonical, "resources": {**canonical["resources"], "requests": {"cpu": "3"}}}, desired
    )
    assert not children.contains(
        {**canonical, "env": [{"name": "A", "value": "500m"}]}, desired
    )  # not a quantity
    # what other writers add (Kueue's tolerations, an injected sidecar) is not drift; losing ours is
    assert children.contains({**canonical, "tolerations": [{"key": "x"}]}, desired)
    ours = {**desired, "tolerations": [{"key": "gpu", "operator": "Exists"}]}
    theirs = {**canonical, "tolerations": [{"key": "kueue"}, {"key": "gpu", "operator": "Exists"}]}
    assert children.contains(theirs, ours)
    assert not children.contains({**canonical, "tolerations": [{"key": "kueue"}]}, ours)
    sidecar = {**canonical, "env": [{"name": "SIDECAR", "value": "1"}, {"name": "A", "value": "0.5"}]}
    assert children.contains(sidecar, desired)
    assert not children.contains({**canonical, "resources": {"limits": {"cpu": "lots"}}}, desired)


@pytest.mark.parametrize("status", [409, 429, 500, 503])
async def test_a_transient_api_error_retries_the_handler_after_the_short_backoff(status):
    async def reconcile(ns, name, **options):
        raise kube.ApiError(status, "Unwell")

    with pytest.raises(kopf.TemporaryError) as e:
        await handle(kopf.Body(PARENT), reconcile)
    assert e.value.delay == TUNABLES.error_backoff_seconds


@pytest.mark.parametrize("status", [403, 404, 422])
async def test_other_api_errors_are_left_to_kopf(status):
    async def reconcile(ns, name, **options):
        raise kube.ApiError(status, "No")

    with pytest.raises(kube.ApiError):
        await handle(kopf.Body(PARENT), reconcile)


PARENT = {
    "apiVersion": "llmops.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "j", "namespace": "ns", "uid": "u"},
    "spec": {},
}


@pytest.mark.parametrize(
    "error", [kube.ApiError(403, "Forbidden", ""), aiohttp.ServerDisconnectedError(), asyncio.TimeoutError()]
)
async def test_an_event_that_cannot_be_written_is_dropped_quietly(monkeypatch, error):
    async def fail(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(kube, "request", fail)
    body = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "a", "namespace": "b"},
    }
    await events._write(body, "Created", "created a", warning=False)  # no exception left for the event loop


def test_tunables_come_from_the_environment_when_the_operator_starts():
    t = Tunables()
    t.load_env({"LLMOPS_OPERATOR_RESYNC_SECONDS": "7", "LLMOPS_OPERATOR_WATCH_TIMEOUT_SECONDS": "30"})
    assert t.resync_seconds == 7.0 and t.watch_timeout_seconds == 30
    with pytest.raises(ValueError, match="LLMOPS_OPERATOR_RESYNC_SECONDS: expected a number, got 'soon'"):
        t.load_env({"LLMOPS_OPERATOR_RESYNC_SECONDS": "soon"})


async def test_a_relist_after_a_gap_reports_children_deleted_meanwhile(monkeypatch):
    """After a 410 the kind is listed again; a cached child missing from the list was deleted while
    the watch was down, and its parent is reconciled (so the child is restored)."""
    cache.clear()
    gone = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "old"}}
    kept = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "kept"}}
    cache.remember(gone)
    cache.remember(kept)

    async def list_page(url, selector, fields):
        assert (selector, fields) == (informer.SELECTOR, None)  # every child kind but pods
        return [dict(kept)], "42"

    monkeypatch.setattr(kube, "list_page", list_page)
    changed = []

    async def on_change(obj):
        changed.append(obj["metadata"]["name"])

    assert await informer._relist("v1", "configmaps", "ConfigMap", None, on_change) == "42"
    assert changed == ["old"]
    assert cache.seen("v1", "ConfigMap", "ns", "old") is None
    cache.clear()


async def test_a_relist_keeps_children_created_while_it_was_in_flight(monkeypatch):
    """A pass that creates a child during the list caches it; the list may not show it yet, and it
    must not be taken for deleted (each would cost a pass, a 409 and a GET)."""
    cache.clear()
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "ns", "name": "new"}}

    async def list_page(url, selector, fields):
        cache.remember(new)  # created by a pass while the list was in flight
        return [], "43"

    monkeypatch.setattr(kube, "list_page", list_page)
    changed = []

    async def on_change(obj):
        changed.append(obj["metadata"]["name"])

    assert await informer._relist("v1", "configmaps", "ConfigMap", None, on_change) == "43"
    assert changed == []
    assert cache.seen("v1", "ConfigMap", "ns", "new") is not None
    cache.clear()


def _pod(name, uid, phase, code=None, reason=None, message=None):
    state = (
        {"terminated": {"exitCode": code, "reason": reason, "message": message}} if code is not None else {}
    )
    return {
        "metadata": {"name": name, "uid": uid},
        "status": {"phase": phase, "containerStatuses": [{"name": "pytorch", "state": state}]},
    }


def test_retries_count_each_retryable_failure_once_and_name_the_permanent_one():
    pods = [
        _pod("j-master-0", "a", "Failed", 143, "Error"),
        _pod("j-worker-0", "b", "Running"),
        _pod("j-worker-1", "c", "Failed", 3, "Error", "log line\nbad data: /data/x.jsonl is not UTF-8"),
    ]
    first = retries.updated([], pods)
    assert [(r["pod"], r["exitCode"]) for r in first] == [("j-master-0", 143)]
    assert retries.updated(first, pods) == first  # the same pod is not counted twice
    again = retries.updated(first, [_pod("j-master-0", "d", "Failed", 137, "OOMKilled")])
    assert [r["exitCode"] for r in again] == [143, 137]
    assert "j-master-0 exited 137 (OOMKilled)" in retries.exhausted_message(again, 1)
    assert (
        retries.permanent_cause(pods) == "j-worker-1 exited 3 (Error): bad data: /data/x.jsonl is not UTF-8"
    )


@contextlib.asynccontextmanager
async def local_api(app: aiohttp.web.Application) -> AsyncIterator[None]:
    """``app`` served on a local port, with our client pointed at it."""
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    kube.configure(kube.Connection(server=f"http://127.0.0.1:{runner.addresses[0][1]}"))
    try:
        yield
    finally:
        await kube.close()
        await runner.cleanup()


async def test_open_watches_leave_connections_for_requests():
    """One watch per child kind and namespace holds a connection for minutes: with ten namespaces
    (70 watches) every request must still find a connection."""
    opened, stop = asyncio.Event(), asyncio.Event()
    watching = 0

    async def endless_watch(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        nonlocal watching
        resp = aiohttp.web.StreamResponse()
        await resp.prepare(request)
        watching += 1
        if watching == 70:
            opened.set()
        await stop.wait()
        return resp

    async def one(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"kind": "ConfigMap", "metadata": {"name": "c"}})

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps", endless_watch)
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps/c", one)

    async def drain(ns: str) -> None:
        async for _ in kube.watch(kube.path("v1", "configmaps", ns), "1", None, 300):
            pass

    async with local_api(app):
        watches = [asyncio.create_task(drain(f"ns{i}")) for i in range(70)]
        try:
            await asyncio.wait_for(opened.wait(), 10)
            got = await asyncio.wait_for(kube.get(kube.path("v1", "configmaps", "ns0", "c")), 5)
            assert got["metadata"]["name"] == "c"
        finally:
            stop.set()
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)


async def test_every_write_names_the_operator_as_its_client_and_field_manager():
    """Audit logs and ``managedFields`` say "llmops-operator", not the HTTP library: the User-Agent,
    and ``fieldManager`` on creates (Events included) and merge patches (status)."""
    seen: list[tuple[str, str, str | None]] = []

    async def record(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append((request.method, request.headers["User-Agent"], request.query.get("fieldManager")))
        return aiohttp.web.json_response({})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{path:.*}", record)
    parent = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "j", "namespace": "n"},
    }
    async with local_api(app):
        await kube.patch(kube.path("llmops.dev/v1alpha1", "trainingjobs", "n", "j", "status"), {"status": {}})
        await events._write(parent, "Created", "created it", False)
    assert seen == [
        ("PATCH", "llmops-operator", "llmops-operator"),
        ("POST", "llmops-operator", "llmops-operator"),
    ]
