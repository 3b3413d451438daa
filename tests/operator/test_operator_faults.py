"""Faults: 500s, 409s and delays on a share of the operator's writes; a restart mid-reconcile."""

from __future__ import annotations

import asyncio

import pytest
from op_harness import IE_API, PTJ, TJ_API, condition, endpoint, eventually, running, training_job

from llmops_operator.controller.settings import TUNABLES

pytestmark = pytest.mark.timeout(90)

N = 4
TJ_CHILDREN = {
    ("v1", "serviceaccounts"): "{}-trainer",
    ("v1", "configmaps"): None,  # two: config and progress
    ("rbac.authorization.k8s.io/v1", "roles"): "{}-progress-writer",
    ("rbac.authorization.k8s.io/v1", "rolebindings"): "{}-progress-writer",
    ("v1", "persistentvolumeclaims"): "{}-checkpoints",
    PTJ: "{}",
}


async def converged(cluster) -> bool:
    for i in range(N):
        tj = await cluster.get(*TJ_API, f"job{i}")
        ie = await cluster.get(*IE_API, f"ep{i}")
        if condition(tj, "Stalled").get("status") != "False" or not (tj.get("status") or {}).get("children"):
            return False
        if condition(ie, "Stalled").get("status") != "False" or not (ie.get("status") or {}).get("url"):
            return False
        if (
            await cluster.get(*PTJ, f"job{i}") is None
            or await cluster.get("apps/v1", "deployments", f"ep{i}") is None
        ):
            return False
    return True


async def assert_no_duplicates(cluster) -> None:
    cms = sorted(c["metadata"]["name"] for c in await cluster.list("v1", "configmaps"))
    assert cms == sorted([f"job{i}-config" for i in range(N)] + [f"job{i}-progress" for i in range(N)])
    for api, pattern in TJ_CHILDREN.items():
        if pattern is None:
            continue
        names = sorted(o["metadata"]["name"] for o in await cluster.list(*api))
        assert names == sorted(pattern.format(f"job{i}") for i in range(N)), api
    for api in (("apps/v1", "deployments"), ("v1", "services")):
        names = sorted(o["metadata"]["name"] for o in await cluster.list(*api))
        assert names == sorted(f"ep{i}" for i in range(N)), api


async def test_converges_under_500_409_and_delays():
    async with running(faults=0.3) as (cluster, _op, emu):
        emu.delay = 0.2
        for i in range(N):
            await cluster.create(training_job(f"job{i}"))
            await cluster.create(endpoint(f"ep{i}"))
        await eventually(lambda: converged(cluster), timeout=60, what="convergence under faults")
        emu.faults = 0
        await assert_no_duplicates(cluster)
        assert any(r[0] == "POST" for r in emu.log)


async def test_a_handler_that_meets_api_errors_retries_soon_without_the_periodic_pass(monkeypatch):
    monkeypatch.setattr(TUNABLES, "resync_seconds", 600.0)  # only handler retries can converge
    async with running(faults=0.3) as (cluster, _op, emu):
        emu.patch_conflicts = False  # on those kopf waits for the next event, which may never come
        for i in range(N):
            await cluster.create(training_job(f"job{i}"))
            await cluster.create(endpoint(f"ep{i}"))
        # kopf's own default would retry a failed handler after 60 s
        await eventually(lambda: converged(cluster), timeout=30, what="convergence by handler retries")
        await assert_no_duplicates(cluster)


async def test_restart_mid_reconcile_converges_without_duplicates():
    async with running() as (cluster, op, _emu):
        for i in range(N):
            await cluster.create(training_job(f"job{i}"))
            await cluster.create(endpoint(f"ep{i}"))
        await asyncio.sleep(0.05)
        await op.stop()  # mid-reconcile: some children exist, some do not
        await cluster.delete(*PTJ, "job0") if await cluster.get(*PTJ, "job0") else None
        await op.start()
        await eventually(lambda: converged(cluster), timeout=40, what="convergence after restart")
        await assert_no_duplicates(cluster)
        # a second restart changes nothing
        before = {o["metadata"]["name"]: o for o in await cluster.list(*PTJ)}
        await op.stop()
        await op.start()
        await asyncio.sleep(1.0)
        after = {o["metadata"]["name"]: o for o in await cluster.list(*PTJ)}
        assert before == after
