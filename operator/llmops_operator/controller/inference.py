"""InferenceEndpoint handlers: resolve the model, ensure Deployment/Service/HPA/PDB, mirror replicas."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import kopf

from llmops_core import api
from llmops_core.api import GROUP, VERSION

from .. import render
from . import cache, children, conditions, desired, events, kube, serial, status
from .common import Outcome, announce, clean, fetch, handle, load_parent, stalled
from .registry import REGISTRY
from .settings import config

logger = logging.getLogger(__name__)

API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceEndpoint"
# Children that come and go with the spec (autoscaling on/off, budget on/off): removed when not rendered.
OPTIONAL = [("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget")]


def selector_string(match_labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))


def url(name: str, ns: str) -> str:
    return f"http://{name}.{ns}.svc.cluster.local"


def replica_state(deployment: dict[str, Any] | None, wanted: int) -> tuple[str, bool, str, str]:
    """(phase, ready, reason, message) from the Deployment's status."""
    st = (deployment or {}).get("status") or {}
    ready = st.get("readyReplicas") or 0
    desired = ((deployment or {}).get("spec") or {}).get("replicas")
    desired = wanted if desired is None else desired
    available = conditions.is_true(st.get("conditions") or [], "Available")
    message = f"{ready}/{desired} replicas ready"
    if desired == 0:
        return "Ready", True, "ScaledToZero", "scaled to zero replicas"
    if ready >= desired and (available or not st.get("conditions")):
        return "Ready", True, "Available", message
    if ready > 0:
        return "Degraded", False, "Progressing", message
    return "Pending", False, "Progressing", message


async def reconcile(ns: str, name: str, cause: str = "resync") -> None:
    await serial.coalesced((KIND, ns, name), lambda: _reconcile(ns, name, cause), must_run=cause != "watch")


async def _reconcile(ns: str, name: str, cause: str) -> None:
    loaded = await load_parent(API_VERSION, "inferenceendpoints", KIND, ns, name)
    if loaded is None:
        return
    body, ie = loaded
    assert isinstance(ie, api.InferenceEndpoint)
    gen = body["metadata"].get("generation")
    old = body.get("status") or {}
    resolved = None
    source = ie.spec.model.from_training_job
    if source:
        tj = await fetch(API_VERSION, "trainingjobs", "TrainingJob", ns, source)
        tj_status = (tj or {}).get("status") or {}
        if tj_status.get("phase") == "Failed":
            message = f"TrainingJob {source} failed; point spec.model at another source"
            await stalled(body, "ModelFailed", message, {"phase": "Pending"})
            return
        if not conditions.is_true(tj_status.get("conditions") or [], "Succeeded"):
            phase = tj_status.get("phase") or ("Missing" if tj is None else "Pending")
            message = f"waiting for TrainingJob {source} to succeed (it is {phase.lower()})"
            await status.write(
                body,
                {
                    "observedGeneration": gen,
                    "phase": "WaitingForModel",
                    "conditions": status.with_conditions(
                        old,
                        gen,
                        Ready=(False, "WaitingForModel", message),
                        Reconciling=(True, "WaitingForModel", message),
                        Stalled=(False, "WaitingForModel", ""),
                    ),
                },
            )
            return
        resolved = tj_status.get("outputLocation") or render.output_location(api.load(clean(tj or {})))
    rendered = desired.children(
        body,
        config(),
        lambda: [children.adopt(c, body) for c in render.render(ie, config(), resolved)],
        resolved,
    )
    actions: dict[str, str] = {}
    for child in rendered:
        current = cache.current(child, cause)
        actions[f"{child['kind']}/{name}"] = await children.ensure(
            child, current, look_first=cause == "resync"
        )
    kinds = {(c["apiVersion"], c["kind"]) for c in rendered}
    for api_version, kind in OPTIONAL:
        if (api_version, kind) not in kinds and await _remove(api_version, kind, ns, name, cause):
            actions[f"{kind}/{name}"] = "deleted"
    announce(body, actions, cause)
    await _status(body, ie, rendered, actions, resolved)


async def _remove(api_version: str, kind: str, ns: str, name: str, cause: str) -> bool:
    """Delete a child the spec no longer asks for, if we own it (watched kinds: the cache knows)."""
    current = cache.seen(api_version, kind, ns, name)
    if current is None and cause == "resync":
        current = await fetch(api_version, kube.plural(kind), kind, ns, name)
    labels = ((current or {}).get("metadata") or {}).get("labels") or {}
    if current is None or labels.get("llmops.dev/inferenceendpoint") != name:
        return False
    try:
        await kube.request("DELETE", kube.path(api_version, kube.plural(kind), ns, name))
    except kube.ApiError as e:
        if e.status != 404:
            raise
    cache.forget(current)
    return True


async def _status(
    body: dict[str, Any],
    ie: api.InferenceEndpoint,
    rendered: list[dict[str, Any]],
    actions: dict[str, str],
    resolved: str | None,
) -> None:
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    old = body.get("status") or {}
    gen = body["metadata"].get("generation")
    deployment = cache.seen("apps/v1", "Deployment", ns, name)
    rendered_dep = next(c for c in rendered if c["kind"] == "Deployment")
    phase, ready, reason, message = replica_state(deployment, ie.spec.replicas.min)
    busy = any(a != "unchanged" for a in actions.values())
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
            Stalled=(False, "Reconciled", ""),
        ),
    }
    await status.write(body, new)
    if phase != old.get("phase") and old.get("phase") is not None:
        events.post(body, phase, f"the endpoint is {phase.lower()}: {message}", warning=phase == "Degraded")


async def poke_waiting(ns: str, training_job: str) -> None:
    """Reconcile the endpoints that serve ``training_job``'s output (it has just succeeded)."""
    for ie in await kube.list_(kube.path(API_VERSION, "inferenceendpoints", ns)):
        ie.setdefault("apiVersion", API_VERSION)
        ie.setdefault("kind", KIND)
        if ((ie.get("spec") or {}).get("model") or {}).get("fromTrainingJob") == training_job:
            cache.remember(ie)
            with contextlib.suppress(Outcome):
                await reconcile(ns, ie["metadata"]["name"], "resync")


@kopf.on.resume(GROUP, VERSION, "inferenceendpoints", id="resume-inferenceendpoint", registry=REGISTRY)
@kopf.on.create(GROUP, VERSION, "inferenceendpoints", id="create-inferenceendpoint", registry=REGISTRY)
async def on_create(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile, "create")


@kopf.on.update(GROUP, VERSION, "inferenceendpoints", id="update-inferenceendpoint", registry=REGISTRY)
async def on_update(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile, "update")
