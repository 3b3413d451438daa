"""TrainingJob handlers: validate, render, ensure children, mirror the PyTorchJob and progress into status."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import kopf

from llmops_core import api
from llmops_core.api import GROUP, VERSION

from .. import render
from ..render.training import names
from . import cache, children, conditions, desired, events, inference, kube, progress, serial, status
from .common import Outcome, announce, fetch, handle, load_parent, stalled
from .registry import REGISTRY
from .settings import TUNABLES, config

logger = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PYTORCHJOB = ("kubeflow.org/v1", "pytorchjobs")
HASH_ANNOTATION = "llmops.dev/spec-hashes"
# Fields that may change while the job runs; everything else is fixed once the PyTorchJob exists.
MUTABLE = {"runPolicy"}
INSTALL = (
    "the Kubeflow training operator (PyTorchJob CRD kubeflow.org/v1) is not installed; install it with "
    'kubectl apply --server-side -k "github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.9.0"'
)


def spec_hashes(spec: dict[str, Any]) -> dict[str, str]:
    """A short hash per immutable top-level spec field, stored on the PyTorchJob."""
    return {
        k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:12]
        for k, v in sorted(spec.items())
        if k not in MUTABLE
    }


def changed_fields(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return sorted(f"spec.{k}" for k in set(old) | set(new) if old.get(k) != new.get(k))


def tokens_per_step(tj: api.TrainingJob) -> float:
    hp, res = tj.spec.hyperparameters, tj.spec.resources
    return float(
        hp.batch_size * hp.gradient_accumulation * hp.sequence_length * res.nodes * res.accelerators_per_node
    )


def shape(tj: api.TrainingJob) -> str:
    res = tj.spec.resources
    return f"{res.nodes}x{res.accelerators_per_node} {res.accelerator}"


async def reconcile(ns: str, name: str, cause: str = "resync") -> None:
    await serial.coalesced((KIND, ns, name), lambda: _reconcile(ns, name, cause), must_run=cause != "watch")


async def _reconcile(ns: str, name: str, cause: str) -> None:
    loaded = await load_parent(API_VERSION, "trainingjobs", KIND, ns, name)
    if loaded is None:
        return
    body, tj = loaded
    assert isinstance(tj, api.TrainingJob)
    if not cache.flags.get("pytorchjob-crd"):
        cache.flags["pytorchjob-crd"] = await kube.served(*PYTORCHJOB)
        if not cache.flags["pytorchjob-crd"]:
            await stalled(body, "TrainingOperatorMissing", INSTALL, {"phase": "Pending"})
            raise Outcome(INSTALL, permanent=False, delay=TUNABLES.crd_retry_seconds)

    rendered = desired.children(body, config(), lambda: _render(body, tj))
    job = next(c for c in rendered if c["kind"] == "PyTorchJob")
    current_job = cache.seen("kubeflow.org/v1", "PyTorchJob", ns, job["metadata"]["name"])
    if current_job is None and body.get("status"):
        # reconciled before, so the job may exist unseen (just restarted): look. A brand-new parent
        # skips the read; should its PyTorchJob exist after all, ensure() runs guard() before a patch.
        current_job = await fetch("kubeflow.org/v1", "pytorchjobs", "PyTorchJob", ns, job["metadata"]["name"])
    try:
        if current_job is not None:
            guard(job, current_job)
        actions: dict[str, str] = {}
        for child in rendered:
            current = cache.current(child, cause)
            check = guard if child is job else None
            action = await children.ensure(child, current, look_first=cause == "resync", check=check)
            actions[f"{child['kind']}/{child['metadata']['name']}"] = action
    except Immutable as e:
        await _immutable(body, job, e.current, e.fields)
        return
    announce(body, actions, cause)
    await _status(body, tj, rendered, actions)


def _render(body: dict[str, Any], tj: api.TrainingJob) -> list[dict[str, Any]]:
    rendered = [children.adopt(c, body) for c in render.render(tj, config())]
    job = next(c for c in rendered if c["kind"] == "PyTorchJob")
    hashes = json.dumps(spec_hashes(body.get("spec") or {}), sort_keys=True)
    job["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = hashes
    return rendered


class Immutable(Exception):
    def __init__(self, current: dict[str, Any], fields: list[str]) -> None:
        super().__init__(", ".join(fields))
        self.current, self.fields = current, fields


def guard(job: dict[str, Any], current: dict[str, Any]) -> None:
    """Raise :class:`Immutable` if ``current`` (the PyTorchJob as it is) ran a different spec."""
    annotations = current["metadata"].get("annotations") or {}
    old = json.loads(annotations.get(HASH_ANNOTATION) or "{}")
    changed = changed_fields(old, json.loads(job["metadata"]["annotations"][HASH_ANNOTATION])) if old else []
    if changed:
        raise Immutable(current, changed)


async def _immutable(
    body: dict[str, Any], job: dict[str, Any], current: dict[str, Any], changed: list[str]
) -> None:
    """Only runPolicy.suspend goes through to a started job; any other change is reported."""
    suspend = job["spec"]["runPolicy"].get("suspend")
    if suspend is not None and (current.get("spec", {}).get("runPolicy") or {}).get("suspend") != suspend:
        await kube.patch(children.url_of(job), {"spec": {"runPolicy": {"suspend": suspend}}})
    message = (
        f"{', '.join(changed)} cannot change once the job has started; "
        "revert the change, or delete and recreate the TrainingJob"
    )
    await stalled(body, "ImmutableField", message)


async def _status(
    body: dict[str, Any], tj: api.TrainingJob, rendered: list[dict[str, Any]], actions: dict[str, str]
) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    n = names(name)
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    job = cache.seen("kubeflow.org/v1", "PyTorchJob", ns, n["pytorchjob"]) or {}
    job_status = job.get("status") or {}
    phase = conditions.pytorchjob_phase(job_status)
    busy = any(a != "unchanged" for a in actions.values())
    if phase == "Succeeded":
        succeeded = (
            True,
            "Succeeded",
            conditions.pytorchjob_message(job_status, "Succeeded") or "training finished",
        )
        ready = (True, "Succeeded", f"the model is at {render.output_location(tj)}")
        reconciling = (False, "Succeeded", "")
    elif phase == "Failed":
        message = conditions.pytorchjob_message(job_status, "Failed") or "the PyTorchJob failed"
        succeeded = (False, "Failed", message)
        ready = (False, "Failed", message)
        reconciling = (False, "Failed", "")
    else:
        succeeded = ("Unknown", phase, f"the PyTorchJob is {phase.lower()}")
        ready = (phase == "Running", phase, f"the PyTorchJob is {phase.lower()}")
        reconciling = (
            busy or phase == "Pending",
            "Progressing" if busy or phase == "Pending" else phase,
            "waiting for the PyTorchJob to start"
            if phase == "Pending"
            else ("updating children" if busy else ""),
        )
    new: dict[str, Any] = {
        "observedGeneration": gen,
        "phase": phase,
        "shape": shape(tj),
        "children": [children.ref(c) for c in rendered],
        "conditions": status.with_conditions(
            old,
            gen,
            Ready=ready,
            Reconciling=reconciling,
            Stalled=(False, "Reconciled", ""),
            Succeeded=succeeded,
        ),
    }
    start = job_status.get("startTime") or old.get("startTime")
    if start is None and phase in ("Running", "Succeeded", "Failed"):
        start = conditions.now()
    if start:
        new["startTime"] = start
    if phase in ("Succeeded", "Failed"):
        new["completionTime"] = (
            job_status.get("completionTime") or old.get("completionTime") or conditions.now()
        )
    if phase == "Succeeded":
        new["outputLocation"] = render.output_location(tj)
    cm = cache.seen("v1", "ConfigMap", ns, n["progress"]) or {}
    prog = progress.from_configmap(cm.get("data"), tokens_per_step(tj), start)
    if prog is not None:
        new["progress"] = prog
    await status.write(body, new)
    if phase != old.get("phase") and old.get("phase") not in (None, "Invalid"):
        events.post(body, phase, f"the training job is {phase.lower()}", warning=phase == "Failed")
    if phase == "Succeeded" and old.get("phase") != "Succeeded":
        await inference.poke_waiting(ns, name)


@kopf.on.resume(GROUP, VERSION, "trainingjobs", id="resume-trainingjob", registry=REGISTRY)
@kopf.on.create(GROUP, VERSION, "trainingjobs", id="create-trainingjob", registry=REGISTRY)
async def on_create(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile, "create")


@kopf.on.update(GROUP, VERSION, "trainingjobs", id="update-trainingjob", registry=REGISTRY)
async def on_update(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile, "update")
