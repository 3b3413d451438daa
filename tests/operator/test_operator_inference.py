"""InferenceEndpoint end to end against the emulator: children, replicas, spec updates, fromTrainingJob."""

from __future__ import annotations

import pytest
from op_harness import IE_API, PTJ, TJ_API, condition, endpoint, eventually, get_status, running, training_job

pytestmark = pytest.mark.timeout(60)

DEP, SVC = ("apps/v1", "deployments"), ("v1", "services")
HPA, PDB = ("autoscaling/v2", "horizontalpodautoscalers"), ("policy/v1", "poddisruptionbudgets")


async def test_create_children_status_and_readiness():
    async with running() as (cluster, _op, _emu):
        parent = await cluster.create(endpoint("chat"))
        for api in (DEP, SVC, HPA, PDB):
            child = await eventually(lambda a=api: cluster.get(*a, "chat"), what=api[1])
            assert child["metadata"]["ownerReferences"][0]["uid"] == parent["metadata"]["uid"]
            assert child["metadata"]["ownerReferences"][0]["controller"] is True
            assert child["metadata"]["labels"]["llmops.dev/inferenceendpoint"] == "chat"
        dep = await cluster.get(*DEP, "chat")
        assert dep["spec"]["replicas"] == 2  # created at replicas.min; from then on the HPA's

        st = await eventually(lambda: get_status(cluster, IE_API, "chat"), what="status")
        assert st["url"] == "http://chat.default.svc.cluster.local"
        assert st["selector"] == "app.kubernetes.io/instance=chat,app.kubernetes.io/name=llmops-server"
        assert st["model"] == "pvc://models/tiny-chat"
        assert st["phase"] == "Pending"
        assert condition({"status": st}, "Ready")["status"] == "False"

        await cluster.patch(*DEP, "chat", {"spec": {"replicas": 3}})  # the HPA scaled it
        await cluster.patch(
            *DEP,
            "chat",
            {
                "status": {
                    "replicas": 3,
                    "readyReplicas": 3,
                    "updatedReplicas": 3,
                    "availableReplicas": 3,
                    "conditions": [{"type": "Available", "status": "True"}],
                }
            },
            sub="status",
        )

        async def ready():
            obj = await cluster.get(*IE_API, "chat")
            return condition(obj, "Ready").get("status") == "True" and obj["status"]

        st = await eventually(ready, what="Ready")
        assert st["replicas"] == 3 and st["readyReplicas"] == 3 and st["phase"] == "Ready"
        assert (await cluster.get(*DEP, "chat"))["spec"]["replicas"] == 3  # a scale is never undone


async def test_partial_readiness_is_progressing_and_only_a_failed_rollout_warns():
    """Every first rollout, update and scale-up passes through partial readiness: Progressing, a
    Normal event. Degraded, with a Warning, is a rollout past its progress deadline."""
    async with running() as (cluster, _op, _emu):
        await cluster.create(endpoint("chat"))
        await eventually(lambda: cluster.get(*DEP, "chat"), what="the Deployment")

        async def deployment_says(**st):
            await cluster.patch(
                *DEP, "chat", {"status": {"replicas": 2, "updatedReplicas": 2, **st}}, sub="status"
            )

        async def phase(want):
            return (await get_status(cluster, IE_API, "chat")).get("phase") == want

        async def ours():
            return [
                (e["reason"], e["type"])
                for e in await cluster.list("v1", "events")
                if e["involvedObject"]["name"] == "chat" and e["source"]["component"] == "llmops-operator"
            ]

        async def said(reason, kind):
            return (reason, kind) in await ours()

        await eventually(lambda: phase("Pending"), what="Pending")
        await deployment_says(readyReplicas=1, availableReplicas=1)
        await eventually(lambda: phase("Progressing"), what="Progressing at 1/2")
        await eventually(lambda: said("Progressing", "Normal"), what="a Normal Progressing event")
        deadline = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        await deployment_says(readyReplicas=1, availableReplicas=1, conditions=[deadline])
        await eventually(lambda: phase("Degraded"), what="Degraded past the deadline")
        await eventually(lambda: said("Degraded", "Warning"), what="a Warning Degraded event")
        assert [e for e in await ours() if e[1] == "Warning"] == [("Degraded", "Warning")]


async def test_spec_update_patches_and_prunes_children():
    async with running() as (cluster, _op, _emu):
        await cluster.create(endpoint("chat"))
        await eventually(lambda: cluster.get(*PDB, "chat"), what="the PDB")
        await cluster.patch(
            *IE_API,
            "chat",
            {
                "metadata": {"generation": 2},
                "spec": {"replicas": {"min": 1, "max": 1}, "resources": {"cpu": "3"}},
            },
        )

        async def updated():
            dep = await cluster.get(*DEP, "chat")
            container = dep["spec"]["template"]["spec"]["containers"][0]
            return (
                dep["spec"].get("replicas") == 1
                and container["resources"]["requests"]["cpu"] == "3"
                and await cluster.get(*HPA, "chat") is None
                and await cluster.get(*PDB, "chat") is None
            )

        await eventually(updated, what="Deployment patched, HPA and PDB removed")

        async def observed():  # the status is written after the children, in the same pass
            return (await get_status(cluster, IE_API, "chat")).get("observedGeneration") == 2

        await eventually(observed, what="observedGeneration 2 in the status")


async def test_deleted_or_edited_children_are_restored():
    async with running() as (cluster, _op, _emu):
        await cluster.create(endpoint("chat"))
        svc = await eventually(lambda: cluster.get(*SVC, "chat"), what="the Service")
        await eventually(lambda: cluster.get(*HPA, "chat"), what="the HPA")
        await cluster.delete(*SVC, "chat")
        await cluster.patch(*HPA, "chat", {"spec": {"maxReplicas": 60}})

        async def restored():
            s = await cluster.get(*SVC, "chat")
            h = await cluster.get(*HPA, "chat")
            return s is not None and s["spec"] == svc["spec"] and h["spec"]["maxReplicas"] == 6

        await eventually(restored, what="Service and HPA restored")


async def test_from_training_job_waits_then_serves():
    async with running() as (cluster, _op, _emu):
        await cluster.create(
            endpoint("tuned", model={"fromTrainingJob": "tiny"}, replicas={"min": 1, "max": 1})
        )

        async def waiting():
            c = condition(await cluster.get(*IE_API, "tuned"), "Ready")
            return c.get("reason") == "WaitingForModel" and c

        c = await eventually(waiting, what="WaitingForModel")
        assert c["status"] == "False" and "tiny" in c["message"]
        assert await cluster.get(*DEP, "tuned") is None

        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        assert await cluster.get(*DEP, "tuned") is None
        done = [{"type": "Running", "status": "True"}, {"type": "Succeeded", "status": "True"}]
        await cluster.patch(*PTJ, "tiny", {"status": {"conditions": done}}, sub="status")
        await eventually(lambda: _succeeded(cluster), what="TJ Succeeded")
        dep = await eventually(lambda: cluster.get(*DEP, "tuned"), what="the Deployment", timeout=10)
        assert "tiny-checkpoints" in str(dep["spec"]["template"])
        st = await eventually(lambda: _with_model(cluster), what="status.model", timeout=10)
        assert st["model"] == "pvc://tiny-checkpoints/model"


async def _succeeded(cluster):
    return (await get_status(cluster, TJ_API, "tiny")).get("phase") == "Succeeded"


async def _with_model(cluster):
    st = await get_status(cluster, IE_API, "tuned")
    return st.get("model") and st


async def test_invalid_endpoint_stalls():
    async with running() as (cluster, _op, _emu):
        doc = endpoint("bad", server={"quantization": "awq"})
        await cluster.create(doc)

        async def stalled():
            c = condition(await cluster.get(*IE_API, "bad"), "Stalled")
            return c.get("reason") == "InvalidSpec" and c

        c = await eventually(stalled, what="Stalled InvalidSpec")
        assert c["message"].startswith("spec.")
        assert await cluster.get(*DEP, "bad") is None
