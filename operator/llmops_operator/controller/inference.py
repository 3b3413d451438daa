"""The InferenceEndpoint pass: resolve the model, ensure Deployment/Service/HPA/PDB, mirror the rollout.

Read top to bottom, one pass does:

1. load the InferenceEndpoint (gone, being deleted or invalid: stop; invalid is reported);
2. for ``fromTrainingJob``, wait (and say so) until that job has succeeded, then serve its output;
3. render the children (cached per spec) and ensure each; remove the HPA or PDB the spec no longer asks for;
4. write status from the Deployment's rollout: Ready only when every replica runs the latest spec.
"""

from __future__ import annotations

import logging
from typing import Any

from llmops_core import api
from llmops_core.api import GROUP, VERSION

from .. import render
from . import cache, children, conditions, desired, events, fit, kube, serial, status
from .common import Problems, announce, clean, ensure_child, fetch, invalid, load_parent, stalled
from .settings import config

logger = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceEndpoint"
# Children that come and go with the spec (autoscaling on/off, budget on/off): removed when not rendered.
OPTIONAL = [("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget")]
# An autoscaled Deployment is created with ``replicas.min`` replicas; from then on the count is the HPA's.
HPA_OWNED = ("replicas",)


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def url(name: str, ns: str) -> str:
    return f"http://{name}.{ns}.svc.cluster.local"


def replica_state(deployment: dict[str, Any] | None, wanted: int) -> tuple[str, bool, str, str]:
    """(phase, ready, reason, message) from the Deployment: Ready only once its rollout is complete.

    Complete means what ``kubectl rollout status`` checks: the controller has seen the latest spec,
    every replica runs it, and all of them are available. Fewer than ``wanted`` (``replicas.min``)
    is never complete, whatever the Deployment asks for. Short of that, with some replicas serving,
    the endpoint is Progressing: a first rollout, an update, a scale-up and a replaced pod all pass
    through it, so it is no warning. Degraded is a rollout past its progress deadline, as Argo CD
    and kstatus read a Deployment, even while old pods still serve.
    """
    dep = deployment or {}
    st, spec, meta = dep.get("status") or {}, dep.get("spec") or {}, dep.get("metadata") or {}
    replicas = spec.get("replicas")
    replicas = wanted if replicas is None else replicas
    ready, updated = st.get("readyReplicas") or 0, st.get("updatedReplicas") or 0
    available = st.get("availableReplicas") or 0
    conds = st.get("conditions") or []
    progressing = conditions.get(conds, "Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "Degraded", False, "RolloutFailed", progressing.get("message") or "the rollout stalled"
    if replicas == 0:
        return "Ready", True, "ScaledToZero", "scaled to zero replicas"
    replicas = max(replicas, wanted)
    message = f"{ready}/{replicas} replicas ready"
    seen = st.get("observedGeneration", 0) >= (meta.get("generation") or 0)
    if seen and updated >= replicas and available >= replicas and ready >= replicas:
        return "Ready", True, "Available", message
    if ready > 0:
        return "Progressing", False, "Progressing", message + (" (rolling out)" if updated < replicas else "")
    return "Pending", False, "Progressing", message


async def reconcile(
    ns: str, name: str, *, verify: bool = False, spec_changed: bool = False, coalesce: bool = False
) -> None:
    """One pass. ``verify`` reads children no watch reports (the periodic pass); ``spec_changed``
    names spec-driven updates "Updated" rather than "Repaired"; ``coalesce`` lets a burst of child
    events share a pass."""
    await serial.coalesced(
        (KIND, ns, name), lambda: _reconcile(ns, name, verify, spec_changed), must_run=not coalesce
    )


async def _reconcile(ns: str, name: str, verify: bool, spec_changed: bool) -> None:
    loaded = await load_parent(API_VERSION, "inferenceendpoints", KIND, ns, name)
    if loaded is None:
        return
    body, ie = loaded
    assert isinstance(ie, api.InferenceEndpoint)
    resolved = None
    if ie.spec.model.from_training_job:
        resolved = await _resolve(body, ie.spec.model.from_training_job)
        if resolved is None:
            return
    fits = fit.verdict(body, ie) if config().fit_check != "off" else None
    if fits is not None and not fits[0] and config().fit_check == "refuse":
        await stalled(body, fit.MISFIT, fits[2], {"phase": "Invalid"}, **{fit.CONDITION: fits})
        return
    try:
        rendered = desired.children(
            body,
            config(),
            lambda: [children.adopt(c, body) for c in render.render(ie, config(), resolved)],
            resolved,
        )
    except api.SpecError as e:  # the operator configuration refuses it (image or account allow-lists)
        await invalid(body, e)
        return
    problems, actions = Problems(), {}
    autoscaled = any(c["kind"] == "HorizontalPodAutoscaler" for c in rendered)
    for child in rendered:
        initial = HPA_OWNED if autoscaled and child["kind"] == "Deployment" else ()
        action, _ = await ensure_child(child, problems, verify=verify, initial=initial)
        actions[f"{child['kind']}/{name}"] = action
    kinds = {(c["apiVersion"], c["kind"]) for c in rendered}
    for api_version, kind in OPTIONAL:
        if (api_version, kind) not in kinds and await _remove(body, api_version, kind, verify):
            actions[f"{kind}/{name}"] = "deleted"
    announce(body, actions, spec_changed)
    await _status(body, ie, rendered, actions, resolved, problems, fits)


async def _resolve(body: dict[str, Any], source: str) -> str | None:
    """The output of TrainingJob ``source`` once it has succeeded; else report why we wait."""
    ns, gen = body["metadata"]["namespace"], body["metadata"].get("generation")
    tj = await fetch(API_VERSION, "trainingjobs", "TrainingJob", ns, source)
    tj_status = (tj or {}).get("status") or {}
    if tj_status.get("phase") == "Failed":
        message = f"TrainingJob {source} failed; point spec.model at another source"
        await stalled(body, "ModelFailed", message, {"phase": "Pending"})
        return None
    if not conditions.is_true(tj_status.get("conditions") or [], "Succeeded"):
        phase = tj_status.get("phase") or ("Missing" if tj is None else "Pending")
        message = f"waiting for TrainingJob {source} to succeed (it is {phase.lower()})"
        await status.write(
            body,
            {
                "observedGeneration": gen,
                "phase": "WaitingForModel",
                "conditions": status.with_conditions(
                    body.get("status") or {},
                    gen,
                    Ready=(False, "WaitingForModel", message),
                    Reconciling=(True, "WaitingForModel", message),
                    Stalled=(False, "WaitingForModel", ""),
                ),
            },
        )
        return None
    return tj_status.get("outputLocation") or render.output_location(api.load(clean(tj or {})))


async def _remove(body: dict[str, Any], api_version: str, kind: str, verify: bool) -> bool:
    """Delete a child the spec no longer asks for, if this endpoint owns it (watched kinds: the
    cache knows)."""
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    current = cache.seen(api_version, kind, ns, name)
    if current is None and verify:
        current = await fetch(api_version, kube.plural(kind), kind, ns, name)
    if current is None or not children.owned_by(current, body["metadata"]["uid"]):
        return False
    await kube.delete(kube.path(api_version, kube.plural(kind), ns, name))
    cache.forget(current)
    return True


async def _status(
    body: dict[str, Any],
    ie: api.InferenceEndpoint,
    rendered: list[dict[str, Any]],
    actions: dict[str, str],
    resolved: str | None,
    problems: Problems,
    fits: fit.Verdict | None,
) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    deployment = cache.seen("apps/v1", "Deployment", ns, name)
    rendered_dep = next(c for c in rendered if c["kind"] == "Deployment")
    phase, ready, reason, message = replica_state(deployment, ie.spec.replicas.min)
    busy = any(a in ("created", "updated", "deleted") for a in actions.values())
    problem = problems.condition()
    stall = (True, *problem) if problem else (False, "Reconciled", "")
    if problem and not ready:
        reason, message = problem
    st = (deployment or {}).get("status") or {}
    new = {
        "observedGeneration": gen,
        "phase": phase,
        "replicas": st.get("replicas") or 0,
        "readyReplicas": st.get("readyReplicas") or 0,
        "url": url(name, ns),
        "selector": selector_string(rendered_dep["spec"]["selector"]["matchLabels"]),
        "model": resolved or ie.spec.model.location,
        "conditions": status.with_conditions(
            old,
            gen,
            Ready=(ready, reason, message),
            Reconciling=(busy or not ready, "Progressing" if busy or not ready else "Reconciled", message),
            Stalled=stall,
            **fit.condition(fits),
        ),
    }
    await status.write(body, new)
    if fit.is_news(body, fits):
        events.post(body, fit.MISFIT, fits[2], warning=True)
    old_stall = conditions.get(old.get("conditions") or [], "Stalled") or {}
    if problem and (old_stall.get("reason"), old_stall.get("message")) != problem:
        events.post(body, problem[0], problem[1], warning=True)
    if phase != old.get("phase") and old.get("phase") is not None:
        events.post(body, phase, f"the endpoint is {phase.lower()}: {message}", warning=phase == "Degraded")
