"""Every kopf handler, registered in one place on one explicit registry.

kopf drives the parents (create, update; after a restart every parent is "created" once more); our
informers drive the children; a background task runs the periodic pass. All of them end in the two
passes, ``training.reconcile`` and ``inference.reconcile``; this module is the only one that knows
both, so an endpoint waiting for a TrainingJob's model is reconciled here when that job succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from llmops_core.api import GROUP, VERSION

from . import cache, inference, informer, kopfstate, kube, scope, training
from .common import Outcome, handle
from .settings import TUNABLES

logger = logging.getLogger(__name__)

REGISTRY = kopf.OperatorRegistry()
PREFIX = "llmops.dev"
API_VERSION = f"{GROUP}/{VERSION}"
_tasks: dict[int, list[asyncio.Task[Any]]] = {}


# --- the two passes, and what follows them ---------------------------------------------------------


async def reconcile_training(ns: str, name: str, **options: bool) -> None:
    if await training.reconcile(ns, name, **options):
        await reconcile_dependents(ns, name)


async def reconcile_dependents(ns: str, training_job: str) -> None:
    """Reconcile the endpoints that serve ``training_job``'s output (it has just succeeded)."""
    for ie in cache.of_kind(API_VERSION, inference.KIND, ns):
        if ((ie.get("spec") or {}).get("model") or {}).get("fromTrainingJob") == training_job:
            with contextlib.suppress(Outcome):
                await inference.reconcile(ns, ie["metadata"]["name"], verify=True)


PASSES = {
    "TrainingJob": reconcile_training,
    "InferenceEndpoint": inference.reconcile,
}
PARENT_LABELS = {"llmops.dev/trainingjob": "TrainingJob", "llmops.dev/inferenceendpoint": "InferenceEndpoint"}


# --- kopf: login and settings -----------------------------------------------------------------------


@kopf.on.login(id="login", registry=REGISTRY)
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf connects with what our own client uses (in-cluster or the kubeconfig), loaded afresh:
    kopf calls this again on 401, when a token has rotated or expired."""
    c = kube.refresh()
    return kopf.ConnectionInfo(
        server=c.server,
        token=c.token,
        ca_path=c.ca_path,
        certificate_path=c.cert_path,
        private_key_path=c.key_path,
        insecure=c.insecure,
    )


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's diff base in memory and its retry state under our prefix (kopfstate.py says why), long
    watches, short retries."""
    settings.persistence.progress_storage = kopfstate.UnmarkedProgress(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopfstate.MemoryDiffBase()
    settings.persistence.finalizer = f"{PREFIX}/finalizer"  # declared, never added: no deletion handlers
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING  # our passes post their own events
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = TUNABLES.watch_inactivity_seconds
    settings.queueing.error_delays = (1, 2, 5, 10)


@kopf.on.startup(id="startup", registry=REGISTRY)
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Settings, then the child informers and the periodic pass (tasks, not kopf timers: a timer adds
    a finalizer, which would block deletion while the operator is down)."""
    configure(settings)
    cache.clear()
    kopfstate.clear()
    loop = asyncio.get_running_loop()
    _tasks[id(loop)] = [*informer.start(child_changed), loop.create_task(_resync_loop(), name="resync")]


@kopf.on.cleanup(id="cleanup", registry=REGISTRY)
async def cleanup(**_: Any) -> None:
    tasks = _tasks.pop(id(asyncio.get_running_loop()), [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await kube.close()


# --- kopf: the parents ------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "trainingjobs", id="cache-trainingjobs", registry=REGISTRY)
@kopf.on.event(GROUP, VERSION, "inferenceendpoints", id="cache-inferenceendpoints", registry=REGISTRY)
async def parent_event(event: dict[str, Any], **_: Any) -> None:
    cache.observe(event)
    if event.get("type") == "DELETED":
        kopfstate.forget(((event.get("object") or {}).get("metadata") or {}).get("uid"))


@kopf.on.create(GROUP, VERSION, "trainingjobs", id="create-trainingjob", registry=REGISTRY)
async def training_created(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile_training)


@kopf.on.update(GROUP, VERSION, "trainingjobs", id="update-trainingjob", registry=REGISTRY)
async def training_updated(body: kopf.Body, **_: Any) -> None:
    await handle(body, reconcile_training, spec_changed=True)


@kopf.on.create(GROUP, VERSION, "inferenceendpoints", id="create-inferenceendpoint", registry=REGISTRY)
async def endpoint_created(body: kopf.Body, **_: Any) -> None:
    await handle(body, inference.reconcile)


@kopf.on.update(GROUP, VERSION, "inferenceendpoints", id="update-inferenceendpoint", registry=REGISTRY)
async def endpoint_updated(body: kopf.Body, **_: Any) -> None:
    await handle(body, inference.reconcile, spec_changed=True)


# --- the children and the periodic pass -------------------------------------------------------------

_running: set[asyncio.Task[None]] = set()


async def child_changed(obj: dict[str, Any]) -> None:
    """A child changed or went: reconcile its parent in the background, bursts coalesced."""
    meta = obj.get("metadata") or {}
    labels, ns = meta.get("labels") or {}, meta.get("namespace")
    for label, kind in PARENT_LABELS.items():
        if labels.get(label) and ns:
            task = asyncio.get_running_loop().create_task(_quietly(kind, ns, labels[label], coalesce=True))
            _running.add(task)
            task.add_done_callback(_running.discard)


async def _quietly(kind: str, ns: str, name: str, **options: bool) -> None:
    """A pass whose failure is logged, not raised: the periodic pass retries it."""
    try:
        await PASSES[kind](ns, name, **options)
    except Outcome as e:
        logger.debug("%s %s/%s: %s", kind, ns, name, e)
    except Exception as e:
        logger.warning("reconciling %s %s/%s failed: %r", kind, ns, name, e)


async def resync_once() -> None:
    """List the parents (dropping any deleted while a watch was down), then reconcile each, reading
    the children no watch reports."""
    for kind, plural in (("TrainingJob", "trainingjobs"), ("InferenceEndpoint", "inferenceendpoints")):
        listed: list[dict[str, Any]] = []
        try:
            for ns in scope.namespaces():
                listed += await kube.list_(kube.path(API_VERSION, plural, ns))
        except Exception as e:  # the API server unreachable, say: the next period tries again
            logger.warning("listing %s failed: %r", plural, e)
            continue
        keys = set()
        for body in listed:
            body.setdefault("apiVersion", API_VERSION)
            body.setdefault("kind", kind)
            keys.add(cache.key_of(body))
            cache.remember(body)
        for key in cache.keys(API_VERSION, kind):
            if key not in keys:
                cache.forget(key)
        for body in listed:
            await _quietly(kind, body["metadata"]["namespace"], body["metadata"]["name"], verify=True)


async def _resync_loop() -> None:
    while True:
        await asyncio.sleep(TUNABLES.resync_seconds)
        await resync_once()
