"""TrainingJob end to end against the emulator: children, status, progress, updates, drift, errors."""

from __future__ import annotations

import asyncio
import copy

import pytest
from op_harness import (
    PTJ,
    TJ_API,
    condition,
    declare_pytorchjobs,
    eventually,
    get_status,
    running,
    training_job,
)

from llmops_core import api
from llmops_operator import render
from llmops_operator.controller import cache, settings

pytestmark = pytest.mark.timeout(60)
RUNNING_AT = "2026-01-01T00:20:00Z"

CHILD_APIS = {
    "ServiceAccount": ("v1", "serviceaccounts"),
    "ConfigMap": ("v1", "configmaps"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "PyTorchJob": PTJ,
}


def rendered(doc):
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = "default"
    return render.render(api.load(doc), settings.config())


async def test_create_makes_rendered_children_with_owner_references():
    doc = training_job("tiny")
    async with running() as (cluster, _op, _emu):
        parent = await cluster.create(doc)
        expected = rendered(doc)
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        for child in expected:
            got = await eventually(
                lambda c=child: cluster.get(*CHILD_APIS[c["kind"]], c["metadata"]["name"]), what=child["kind"]
            )
            assert got["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "llmops.dev/v1alpha1",
                    "kind": "TrainingJob",
                    "name": "tiny",
                    "uid": parent["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            assert got["metadata"]["labels"]["llmops.dev/trainingjob"] == "tiny"
            assert got["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "llmops-operator"
            # exactly what the renderer returned (plus owner references and our spec-hash annotation)
            assert got.get("spec") == child.get("spec")
            assert got.get("data") == child.get("data")
            assert got.get("rules") == child.get("rules")
        role = await cluster.get(*CHILD_APIS["Role"], "tiny-progress-writer")
        assert role["rules"][0]["resourceNames"] == ["tiny-progress"]

        st = await eventually(lambda: get_status(cluster, TJ_API, "tiny"), what="status")
        assert st["phase"] == "Pending"
        assert st["shape"] == "1x1 cpu"
        assert st["observedGeneration"] == 1
        assert condition({"status": st}, "Ready")["status"] == "False"
        assert condition({"status": st}, "Stalled")["status"] == "False"
        assert {c["kind"] for c in st["children"]} == {c["kind"] for c in expected}


async def test_status_follows_the_pytorchjob_and_progress():
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        running_conds = [
            {"type": "Created", "status": "True"},
            {"type": "Running", "status": "True", "message": "running", "lastTransitionTime": RUNNING_AT},
        ]
        # Kubeflow's startTime is when it accepted the job; ours is when it began running
        job_status = {"conditions": running_conds, "startTime": "2026-01-01T00:00:00Z"}
        await cluster.patch(*PTJ, "tiny", {"status": job_status}, sub="status")

        async def is_running():
            obj = await cluster.get(*TJ_API, "tiny")
            return obj["status"]["phase"] == "Running" and condition(obj, "Ready")["status"] == "True"

        await eventually(is_running, what="Running and Ready")
        assert (await get_status(cluster, TJ_API, "tiny"))["startTime"] == RUNNING_AT

        data = {
            "step": "50",
            "totalSteps": "200",
            "loss": "2.5",
            "evalLoss": "2.7",
            "tokensPerSecond": "1024",
            "lastCheckpoint": "step-50",
            "updatedAt": "2026-01-01T00:00:00Z",
            "phase": "training",
        }
        await cluster.patch("v1", "configmaps", "tiny-progress", {"data": data})

        async def progressed():
            st = await get_status(cluster, TJ_API, "tiny")
            return st.get("progress", {}).get("step") == 50 and st["progress"]

        progress = await eventually(progressed, what="status.progress")
        assert progress["summary"] == "50/200"
        assert progress["loss"] == 2.5 and progress["tokensPerSecond"] == 1024
        # 150 steps left x (8 x 128 tokens per step) / 1024 tokens/s = 150 s
        assert progress["eta"] == "2m30s"
        assert progress["lastCheckpoint"] == "step-50"

        done = [*running_conds, {"type": "Succeeded", "status": "True", "message": "done"}]
        await cluster.patch(*PTJ, "tiny", {"status": {"conditions": done}}, sub="status")

        async def succeeded():
            obj = await cluster.get(*TJ_API, "tiny")
            return obj["status"]["phase"] == "Succeeded" and condition(obj, "Succeeded")["status"] == "True"

        await eventually(succeeded, what="Succeeded")
        st = await get_status(cluster, TJ_API, "tiny")
        assert st["outputLocation"] == "pvc://tiny-checkpoints/model"
        assert st["completionTime"]
        # the trainer's data survived every pass
        cm = await cluster.get("v1", "configmaps", "tiny-progress")
        assert cm["data"] == data


async def test_failed_wins_over_running_in_the_set_of_conditions():
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("boom"))
        await eventually(lambda: cluster.get(*PTJ, "boom"), what="the PyTorchJob")
        conds = [
            {"type": "Failed", "status": "True", "message": "OOMKilled"},
            {"type": "Running", "status": "True"},
        ]
        await cluster.patch(*PTJ, "boom", {"status": {"conditions": conds}}, sub="status")

        async def failed():
            obj = await cluster.get(*TJ_API, "boom")
            return obj["status"]["phase"] == "Failed" and condition(obj, "Succeeded")["status"] == "False"

        await eventually(failed, what="Failed")
        obj = await cluster.get(*TJ_API, "boom")
        assert condition(obj, "Succeeded")["reason"] == "Failed"
        assert "OOMKilled" in condition(obj, "Succeeded")["message"]


async def test_drift_is_repaired_without_wiping_progress():
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("tiny"))
        original = await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        await eventually(lambda: cluster.get("v1", "configmaps", "tiny-config"), what="config")
        await cluster.patch("v1", "configmaps", "tiny-progress", {"data": {"step": "7"}})
        await cluster.delete("v1", "configmaps", "tiny-config")
        await cluster.patch(*PTJ, "tiny", {"spec": {"runPolicy": {"backoffLimit": 99}}})
        await cluster.patch(
            "v1",
            "configmaps",
            "tiny-progress",
            {
                "metadata": {
                    "labels": {"llmops.dev/trainingjob": "tiny", "app.kubernetes.io/part-of": "hacked"}
                }
            },
        )

        async def repaired():
            job = await cluster.get(*PTJ, "tiny")
            cfg = await cluster.get("v1", "configmaps", "tiny-config")
            cm = await cluster.get("v1", "configmaps", "tiny-progress")
            return (
                cfg is not None
                and job["spec"]["runPolicy"] == original["spec"]["runPolicy"]
                and cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llmops"
            )

        await eventually(repaired, what="drift repaired")
        cm = await cluster.get("v1", "configmaps", "tiny-progress")
        assert cm["data"] == {"step": "7"}


async def test_suspend_goes_through_and_other_edits_stall():
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("tiny"))
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob")
        await cluster.patch(
            *TJ_API, "tiny", {"metadata": {"generation": 2}, "spec": {"runPolicy": {"suspend": True}}}
        )

        async def suspended():
            job = await cluster.get(*PTJ, "tiny")
            return job["spec"]["runPolicy"].get("suspend") is True

        await eventually(suspended, what="suspend patched through")
        await cluster.patch(
            *TJ_API,
            "tiny",
            {"metadata": {"generation": 3}, "spec": {"hyperparameters": {"learningRate": 0.01}}},
        )

        async def stalled():
            obj = await cluster.get(*TJ_API, "tiny")
            c = condition(obj, "Stalled")
            return c.get("status") == "True" and c.get("reason") == "ImmutableField" and c

        c = await eventually(stalled, what="Stalled ImmutableField")
        assert "spec.hyperparameters" in c["message"]
        assert "delete and recreate" in c["message"]
        job = await cluster.get(*PTJ, "tiny")
        assert "0.01" not in str(job["metadata"]["annotations"])  # the job itself was left alone
        assert (await get_status(cluster, TJ_API, "tiny"))["observedGeneration"] == 3
        # the job runs on as it started, and its status still follows it to the end
        done = [{"type": "Succeeded", "status": "True", "message": "done"}]
        await cluster.patch(*PTJ, "tiny", {"status": {"conditions": done}}, sub="status")

        async def succeeded():
            return (await get_status(cluster, TJ_API, "tiny")).get("phase") == "Succeeded"

        await eventually(succeeded, what="Succeeded after an ignored edit")


async def test_an_operator_configuration_change_never_patches_a_started_job(monkeypatch):
    """New images or defaults apply to new jobs; a running PyTorchJob keeps the shape it started with."""
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("steady"))
        before = await eventually(lambda: cluster.get(*PTJ, "steady"), what="the PyTorchJob")
        changed = settings.config().model_copy(update={"trainer_image": "registry.example/other:2"})
        monkeypatch.setattr(settings, "_config", changed)
        await asyncio.sleep(4)  # two periodic passes with the new configuration
        after = await cluster.get(*PTJ, "steady")
        assert after["spec"]["pytorchReplicaSpecs"] == before["spec"]["pytorchReplicaSpecs"]
        assert condition(await cluster.get(*TJ_API, "steady"), "Stalled").get("status") == "False"


async def test_invalid_spec_stalls_naming_the_field():
    doc = training_job("bad")
    doc["spec"]["resources"] = {"accelerator": "cpu", "instanceTypes": ["p5.48xlarge"]}
    async with running() as (cluster, _op, emu):
        await cluster.create(doc)

        async def stalled():
            obj = await cluster.get(*TJ_API, "bad")
            c = condition(obj, "Stalled")
            return c.get("reason") == "InvalidSpec" and c

        c = await eventually(stalled, what="Stalled InvalidSpec")
        assert c["status"] == "True"
        assert c["message"].startswith("spec.resources.instanceTypes[0]")
        assert (await get_status(cluster, TJ_API, "bad"))["phase"] == "Invalid"
        assert await cluster.get(*PTJ, "bad") is None
        patches = [r for r in emu.log if r[0] == "PATCH" and r[1].endswith("/bad/status")]
        assert len(patches) <= 3  # no retry storm


async def test_missing_pytorchjob_crd_stalls_then_recovers():
    async with running(pytorchjobs=False) as (cluster, _op, emu):
        await cluster.create(training_job("tiny"))

        async def stalled():
            obj = await cluster.get(*TJ_API, "tiny")
            c = condition(obj, "Stalled")
            return c.get("reason") == "TrainingOperatorMissing" and c

        c = await eventually(stalled, what="Stalled TrainingOperatorMissing")
        assert "kubectl apply --server-side -k" in c["message"]
        declare_pytorchjobs(emu)
        await eventually(lambda: cluster.get(*PTJ, "tiny"), what="the PyTorchJob once the CRD exists")

        async def unstalled():
            return condition(await cluster.get(*TJ_API, "tiny"), "Stalled").get("status") == "False"

        await eventually(unstalled, what="Stalled=False")


async def test_a_finished_job_is_final_when_its_pytorchjob_goes():
    """Kubeflow's ttlSecondsAfterFinished deletes a finished PyTorchJob: the TrainingJob keeps its
    outcome and nothing is created again (no new run every TTL)."""
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("once"))
        await eventually(lambda: cluster.get(*PTJ, "once"), what="the PyTorchJob")
        done = [{"type": "Succeeded", "status": "True", "message": "done"}]
        await cluster.patch(*PTJ, "once", {"status": {"conditions": done}}, sub="status")

        async def succeeded():
            return (await get_status(cluster, TJ_API, "once")).get("phase") == "Succeeded"

        await eventually(succeeded, what="Succeeded")
        await cluster.delete(*PTJ, "once")  # the TTL controller's delete
        await asyncio.sleep(4)  # two periodic passes (1.5 s) and the delete's watch event
        assert await cluster.get(*PTJ, "once") is None
        st = await get_status(cluster, TJ_API, "once")
        assert st["phase"] == "Succeeded" and condition({"status": st}, "Succeeded")["status"] == "True"


async def test_a_failed_job_is_stalled_for_kstatus_tools():
    """Flux and Helm 4's --wait (kstatus) read Stalled=True as failed; a failed job must say so."""
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("sad"))
        await eventually(lambda: cluster.get(*PTJ, "sad"), what="the PyTorchJob")
        failed = [{"type": "Failed", "status": "True", "message": "exit code 3"}]
        await cluster.patch(*PTJ, "sad", {"status": {"conditions": failed}}, sub="status")

        async def stalled():
            obj = await cluster.get(*TJ_API, "sad")
            c = condition(obj, "Stalled")
            return c.get("status") == "True" and c.get("reason") == "Failed" and c

        assert "exit code 3" in (await eventually(stalled, what="Stalled Failed"))["message"]


async def test_a_child_the_api_server_refuses_does_not_stop_status():
    """A refused write to one child (here a claim: the emulator answers 422) is reported, and the
    other children and the status still follow the job."""
    async with running() as (cluster, _op, emu):
        original = emu._handle

        async def refuse_claims(request):
            if (
                request.resource
                and "persistentvolumeclaims" in str(request.resource)
                and str(request.method).upper().endswith("POST")
            ):
                import aiohttp.web

                return aiohttp.web.json_response({"kind": "Status", "code": 422, "message": "no"}, status=422)
            return await original(request)

        emu._handle = refuse_claims
        await cluster.create(training_job("half"))
        await eventually(lambda: cluster.get(*PTJ, "half"), what="the PyTorchJob")
        running_conds = [{"type": "Running", "status": "True"}]
        await cluster.patch(*PTJ, "half", {"status": {"conditions": running_conds}}, sub="status")

        async def reported():
            obj = await cluster.get(*TJ_API, "half")
            c = condition(obj, "Stalled")
            return obj["status"].get("phase") == "Running" and c.get("reason") == "ApplyFailed" and c

        c = await eventually(reported, what="Running with ApplyFailed")
        assert "PersistentVolumeClaim/half-checkpoints" in c["message"]


async def test_an_image_outside_the_allow_list_is_refused_and_nothing_is_created(monkeypatch):
    policy = settings.config().model_copy(update={"allowed_images": ["registry.example/ml/*"]})
    monkeypatch.setattr(settings, "_config", policy)
    async with running() as (cluster, _op, _emu):
        await cluster.create(training_job("rogue", image="evil.example/miner:1"))

        async def refused():
            c = condition(await cluster.get(*TJ_API, "rogue"), "Stalled")
            return c.get("reason") == "InvalidSpec" and c

        c = await eventually(refused, what="Stalled InvalidSpec")
        assert "spec.image" in c["message"] and "evil.example/miner:1" in c["message"]
        assert await cluster.get(*PTJ, "rogue") is None


BIG = {
    "model": {"preset": "1b"},
    "data": {"train": "s3://bucket/data/"},
    "hyperparameters": {"maxSteps": 10, "batchSize": 16, "sequenceLength": 2048},
    "resources": {"accelerator": "nvidia-gpu", "acceleratorsPerNode": 1, "instanceTypes": ["g5.xlarge"]},
    "output": {"location": "s3://bucket/out/"},
}


@pytest.mark.parametrize("policy", ["warn", "refuse"])
async def test_a_job_too_big_for_its_accelerators_is_flagged_before_any_pod(policy, monkeypatch):
    """The same estimate as ``llmops estimate``: warn sets FitsAccelerators=False and goes on; refuse
    creates nothing and says what would fit."""
    monkeypatch.setattr(settings, "_config", settings.config().model_copy(update={"fit_check": policy}))
    async with running() as (cluster, _op, _emu):
        doc = training_job("big")
        doc["spec"] = BIG
        await cluster.create(doc)

        async def flagged():
            c = condition(await cluster.get(*TJ_API, "big"), "FitsAccelerators")
            return c.get("status") == "False" and c

        c = await eventually(flagged, what="FitsAccelerators=False")
        assert c["reason"] == "InsufficientAcceleratorMemory" and "g5.xlarge" in c["message"]
        assert "would fit" in c["message"]
        if policy == "warn":
            assert await eventually(lambda: cluster.get(*PTJ, "big"), what="the PyTorchJob all the same")
        else:
            stalled = condition(await cluster.get(*TJ_API, "big"), "Stalled")
            assert stalled["reason"] == "InsufficientAcceleratorMemory"
            await asyncio.sleep(2)
            assert await cluster.get(*PTJ, "big") is None


async def test_a_retry_is_counted_though_its_pod_went_before_the_pass_ran():
    """Kubeflow replaces a pod that exits retryably at once, under the same name. Under load the pass
    its failure starts may run only after that (a pass of the job is still writing, every slot is
    busy): the failure must still count against the retry budget."""
    async with running() as (cluster, _op, emu):
        await cluster.create(training_job("busy", runPolicy={"backoffLimit": 1}))
        await eventually(lambda: cluster.get(*PTJ, "busy"), what="the PyTorchJob")
        labels = {
            "app.kubernetes.io/managed-by": "llmops-operator",
            "app.kubernetes.io/component": "training",
            "llmops.dev/trainingjob": "busy",
        }
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "busy-master-0", "labels": labels}}
        first = await cluster.create({**pod, "status": {"phase": "Running"}})
        written = len(emu.log)
        status_path = f"/apis/{TJ_API[0]}/namespaces/default/{TJ_API[1]}/busy/status"
        emu.hold[status_path] = gate = asyncio.Event()
        running_ = [{"type": "Running", "status": "True"}]
        await cluster.patch(*PTJ, "busy", {"status": {"conditions": running_}}, sub="status")

        async def writing():  # a pass holds the job's turn, its status write kept waiting
            return any(m == "PATCH" and p == status_path for m, p, _ in emu.log[written:])

        await eventually(writing, what="a pass writing status")
        exited = {"name": "pytorch", "state": {"terminated": {"exitCode": 143, "reason": "Error"}}}
        failed = {"phase": "Failed", "containerStatuses": [exited]}
        await cluster.patch("v1", "pods", "busy-master-0", {"status": failed}, sub="status")
        await cluster.delete("v1", "pods", "busy-master-0")  # Kubeflow's replacement, same name
        second = await cluster.create({**pod, "status": {"phase": "Pending"}})
        await asyncio.sleep(1)  # the watch has brought the failure, the deletion and the new pod
        gate.set()

        async def counted():
            return (await get_status(cluster, TJ_API, "busy")).get("retries")

        retried = await eventually(counted, timeout=10, what="the retry counted")
        assert [(r["uid"], r["exitCode"]) for r in retried] == [(first["metadata"]["uid"], 143)]
        # the replacement exits retryably too: past backoffLimit 1, the job fails
        await cluster.patch("v1", "pods", "busy-master-0", {"status": failed}, sub="status")

        async def exhausted():
            st = await get_status(cluster, TJ_API, "busy")
            return st.get("phase") == "Failed" and st

        st = await eventually(exhausted, timeout=10, what="the retry budget spent")
        assert [r["uid"] for r in st["retries"]] == [first["metadata"]["uid"], second["metadata"]["uid"]]
        assert cache.gone("default", "llmops.dev/trainingjob=busy") == []  # read, so not kept
