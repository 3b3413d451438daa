"""The TrainingJob pass: validate, render, ensure children, mirror the PyTorchJob and progress into status.

Read top to bottom, one pass does:

1. load the TrainingJob (gone, being deleted or invalid: stop; invalid is reported);
2. a finished job is final: its outcome stays in status and nothing is created again (Kubeflow's
   ``ttlSecondsAfterFinished`` deletes the PyTorchJob; that must not start a new run);
3. render the children (cached per spec) and ensure each: the PyTorchJob and the checkpoint claim are
   created once and never changed (a running job keeps the shape it started with, whatever later
   spec or operator-configuration changes say); the rest follow the render;
4. write status from the PyTorchJob's conditions and the trainer's progress ConfigMap.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from llmops_core import api
from llmops_core.api import GROUP, VERSION

from .. import render
from ..render.training import names
from . import cache, children, conditions, desired, events, fit, kube, progress, retries, serial, status
from .common import Outcome, Problems, announce, ensure_child, invalid, load_parent, stalled
from .settings import TUNABLES, config

logger = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TrainingJob"
PYTORCHJOB = ("kubeflow.org/v1", "pytorchjobs")
HASH_ANNOTATION = "llmops.dev/spec-hashes"
FINAL = ("Succeeded", "Failed")
# Fields that may change while the job runs; everything else is fixed once the PyTorchJob exists.
MUTABLE = {"runPolicy"}
CREATE_ONLY = {"PyTorchJob", "PersistentVolumeClaim"}
LABEL = "llmops.dev/trainingjob"  # on every child and on the training pods
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
        hp.batch_size * hp.gradient_accumulation * hp.sequence_length * res.nodes * res.processes_per_node
    )


def shape(tj: api.TrainingJob) -> str:
    res = tj.spec.resources
    return f"{res.nodes}x{res.accelerators_per_node} {res.accelerator}"


async def reconcile(
    ns: str, name: str, *, verify: bool = False, spec_changed: bool = False, coalesce: bool = False
) -> bool:
    """One pass; True when it saw the job succeed (endpoints waiting for its model can go ahead).

    ``verify`` reads children no watch reports (the periodic pass); ``spec_changed`` names spec-driven
    updates "Updated" rather than "Repaired"; ``coalesce`` lets a burst of child events share a pass.
    """
    result = await serial.coalesced(
        (KIND, ns, name), lambda: _reconcile(ns, name, verify, spec_changed), must_run=not coalesce
    )
    return bool(result)


async def _reconcile(ns: str, name: str, verify: bool, spec_changed: bool) -> bool:
    loaded = await load_parent(API_VERSION, "trainingjobs", KIND, ns, name)
    if loaded is None:
        if cache.seen(API_VERSION, KIND, ns, name) is None:  # deleted: its failed pods go with it
            cache.settle(ns, f"{LABEL}={name}")
        return False
    body, tj = loaded
    assert isinstance(tj, api.TrainingJob)
    if (body.get("status") or {}).get("phase") in FINAL:
        cache.settle(ns, f"{LABEL}={name}")  # a finished job counts no more retries
        return False
    if not cache.flags.get("pytorchjob-crd"):
        cache.flags["pytorchjob-crd"] = await kube.served(*PYTORCHJOB)
        if not cache.flags["pytorchjob-crd"]:
            await stalled(body, "TrainingOperatorMissing", INSTALL, {"phase": "Pending"})
            raise Outcome(INSTALL, permanent=False, delay=TUNABLES.crd_retry_seconds)

    fits = fit.verdict(body, tj) if config().fit_check != "off" else None
    if fits is not None and not fits[0] and config().fit_check == "refuse":
        await stalled(body, fit.MISFIT, fits[2], {"phase": "Invalid"}, **{fit.CONDITION: fits})
        return False
    try:
        rendered = desired.children(body, config(), lambda: _render(body, tj))
    except api.SpecError as e:  # the operator configuration refuses it (image or account allow-lists)
        await invalid(body, e)
        return False
    problems, actions = Problems(), {}
    job_now: dict[str, Any] | None = None
    for child in rendered:
        is_job = child["kind"] == "PyTorchJob"
        if is_job and cache.current(child, verify) is None and body.get("status"):
            # reconciled before, so the job may exist unseen (just restarted): look before creating
            cache.remember(await kube.get(children.url_of(child)))
        action, obj = await ensure_child(
            child, problems, verify=verify, create_only=child["kind"] in CREATE_ONLY
        )
        actions[f"{child['kind']}/{child['metadata']['name']}"] = action
        if is_job:
            job_now = obj
    if job_now is not None:
        await _spec_change(body, next(c for c in rendered if c["kind"] == "PyTorchJob"), job_now, problems)
    announce(body, actions, spec_changed)
    return await _status(body, tj, rendered, actions, job_now, problems, fits)


def _render(body: dict[str, Any], tj: api.TrainingJob) -> list[dict[str, Any]]:
    rendered = render.render(tj, config())
    job = next(c for c in rendered if c["kind"] == "PyTorchJob")
    hashes = json.dumps(spec_hashes(body.get("spec") or {}), sort_keys=True)
    job["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = hashes
    return [children.adopt(c, body) for c in rendered]


async def _spec_change(
    body: dict[str, Any], job: dict[str, Any], current: dict[str, Any], problems: Problems
) -> None:
    """A started job keeps its spec, except ``runPolicy`` (suspend, which Kueue and users pause jobs
    with, the back-off limit, deadlines and TTL): that follows the TrainingJob. A change to any other
    field is reported, and the job runs on as it started."""
    run_policy = job["spec"]["runPolicy"]
    if not children.contains((current.get("spec") or {}).get("runPolicy"), run_policy):
        patch = {"spec": {"runPolicy": run_policy}}
        cache.remember(await kube.patch(children.url_of(job), patch))
    old = json.loads((current["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) or "{}")
    new = json.loads(job["metadata"]["annotations"][HASH_ANNOTATION])
    changed = changed_fields(old, new) if old else []
    if changed:
        problems.add(
            "ImmutableField",
            f"{', '.join(changed)} cannot change once the job has started and was not applied; "
            "the job runs on as it started. Revert the change, or delete and recreate the TrainingJob",
        )


async def _status(
    body: dict[str, Any],
    tj: api.TrainingJob,
    rendered: list[dict[str, Any]],
    actions: dict[str, str],
    job: dict[str, Any] | None,
    problems: Problems,
    fits: fit.Verdict | None,
) -> bool:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    n = names(name)
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    job_status = (job or {}).get("status") or {}
    phase = conditions.pytorchjob_phase(job_status)
    busy = any(a in ("created", "updated") for a in actions.values())
    problem = problems.condition()
    parent = f"{LABEL}={name}"
    gone = cache.gone(ns, parent)  # failed and replaced before this pass: they count too
    pods = cache.of_kind("v1", "Pod", ns, parent=parent) + gone
    retried = retries.updated(old.get("retries") or [], pods)
    limit = tj.spec.run_policy.backoff_limit
    failure = None
    if job is not None and phase not in FINAL and len(retried) > limit:
        # past the budget: suspend the PyTorchJob (Kubeflow removes its pods) and fail for good
        await kube.patch(children.url_of(job), {"spec": {"runPolicy": {"suspend": True}}})
        phase, failure = "Failed", ("RetryBudgetExhausted", retries.exhausted_message(retried, limit))
    elif phase == "Failed":
        cause = retries.permanent_cause(pods)
        message = conditions.pytorchjob_message(job_status, "Failed") or "the PyTorchJob failed"
        failure = ("Failed", f"{message}: {cause}" if cause else message)
    if phase == "Succeeded":
        message = conditions.pytorchjob_message(job_status, "Succeeded") or "training finished"
        succeeded = (True, "Succeeded", message)
        ready = (True, "Succeeded", f"the model is at {render.output_location(tj)}")
        reconciling = (False, "Succeeded", "")
        stall = (False, "Succeeded", "")
    elif failure is not None:
        succeeded = ready = (False, *failure)
        stall = (True, *failure)  # kstatus (Flux, Helm 4's --wait) reads Stalled as failed
        reconciling = (False, failure[0], "")
    else:
        waiting = phase == "Pending"
        succeeded = ("Unknown", phase, f"the PyTorchJob is {phase.lower()}")
        ready = (phase == "Running", phase, f"the PyTorchJob is {phase.lower()}")
        reconciling = (
            busy or waiting,
            "Progressing" if busy or waiting else phase,
            "waiting for the PyTorchJob to start" if waiting else ("updating children" if busy else ""),
        )
        stall = (True, *problem) if problem else (False, "Reconciled", "")
    new: dict[str, Any] = {
        "observedGeneration": gen,
        "phase": phase,
        "shape": shape(tj),
        "children": [children.ref(c) for c in rendered],
        "retries": retried,
        "conditions": status.with_conditions(
            old,
            gen,
            Ready=ready,
            Reconciling=reconciling,
            Stalled=stall,
            Succeeded=succeeded,
            **fit.condition(fits),
        ),
    }
    start = old.get("startTime")
    if start is None and phase in ("Running", *FINAL):
        start = conditions.pytorchjob_started(job_status) or conditions.now()
    if start:
        new["startTime"] = start
    if phase in FINAL:
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
    cache.settle(ns, parent, gone)
    if fit.is_news(body, fits):
        events.post(body, fit.MISFIT, fits[2], warning=True)
    if problem and problem != _stalled_as(old):
        events.post(body, problem[0], problem[1], warning=True)
    if phase != old.get("phase") and old.get("phase") not in (None, "Invalid"):
        said = f": {failure[1]}" if failure else ""
        events.post(body, phase, f"the training job is {phase.lower()}{said}", warning=phase == "Failed")
    elif len(retried) > len(old.get("retries") or []):
        events.post(body, "Retrying", f"{retries.describe(retried[-1])}; {len(retried)}/{limit} retries used")
    return phase == "Succeeded" and old.get("phase") != "Succeeded"


def _stalled_as(old: dict[str, Any]) -> tuple[str, str] | None:
    c = conditions.get(old.get("conditions") or [], "Stalled")
    return (c.get("reason", ""), c.get("message", "")) if c and c.get("status") == "True" else None
