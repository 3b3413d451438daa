"""Our children's watches: list, then watch, each kind, filtered by the API server on our label.

Each event updates the cache and reconciles the parent the child belongs to (its ``llmops.dev/<kind>``
label), so a child's status change (a PyTorchJob finishing, a Deployment becoming ready, the trainer
writing the progress ConfigMap) reaches the parent's status within one pass, and a child deleted or
edited by hand is restored by that pass. When a watch expires (410 Gone) the kind is listed again and
compared with the cache: children deleted during the gap count as deleted events, so nothing is missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from . import cache, kube, scope
from .settings import TUNABLES

logger = logging.getLogger(__name__)

SELECTOR = "app.kubernetes.io/managed-by=llmops-operator"
CHILDREN = [
    ("kubeflow.org/v1", "pytorchjobs", "PyTorchJob"),
    ("apps/v1", "deployments", "Deployment"),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("v1", "services", "Service"),
    ("v1", "configmaps", "ConfigMap"),
    ("v1", "pods", "Pod"),  # training pods (our labels ride on the template): exit codes, retries
]
# Pods: only the trainer's; an endpoint's pods say nothing its Deployment's status does not. And only
# failed ones, the only pods a pass reads (``cache.unread``): the API server then sends a pod when it
# fails and when it goes, not each step of every pod's scheduling and start, which we would decode
# only to drop.
SELECTORS = {"Pod": f"{SELECTOR},app.kubernetes.io/component=training"}
FIELDS = {"Pod": "status.phase=Failed"}
OnChange = Callable[[dict[str, Any]], Awaitable[None]]


async def _relist(api_version: str, plural: str, kind: str, ns: str | None, on_change: OnChange) -> str:
    """List the kind, bring the cache in line (deletions included), return where to watch from.

    Only entries cached before the list began can have been deleted unseen: a pass that creates a
    child while the list is in flight caches it too, and the list may not show it yet. Forgetting
    those would cost a pass, a 409 and a GET each.
    """
    known = cache.keys(api_version, kind, ns)
    url = kube.path(api_version, plural, ns)
    items, version = await kube.list_page(url, SELECTORS.get(kind, SELECTOR), FIELDS.get(kind))
    seen = set()
    for obj in items:
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        seen.add(cache.key_of(obj))
        if cache.observe({"type": "MODIFIED", "object": obj}):
            await on_change(obj)
    for key in known:
        obj = cache.seen(*key) if key not in seen else None
        if obj is not None and cache.observe({"type": "DELETED", "object": obj}):
            await on_change(obj)
    return version


async def inform(api_version: str, plural: str, kind: str, ns: str | None, on_change: OnChange) -> None:
    """List and watch one kind in one namespace (or all) until cancelled."""
    url = kube.path(api_version, plural, ns)
    while True:
        try:
            version = await _relist(api_version, plural, kind, ns, on_change)
            while True:  # each watch request ends after its timeout; resume where it stopped
                timeout = TUNABLES.watch_timeout_seconds
                selector = SELECTORS.get(kind, SELECTOR)
                async for event in kube.watch(url, version, selector, timeout, FIELDS.get(kind)):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") == "BOOKMARK":
                        continue
                    obj.setdefault("apiVersion", api_version)
                    obj.setdefault("kind", kind)
                    if cache.observe(event):
                        await on_change(obj)
        except kube.Gone:
            logger.debug("%s watch expired; listing again", kind)
        except kube.ApiError as e:
            if e.status == 404:  # the CRD is not installed (yet)
                await asyncio.sleep(TUNABLES.crd_retry_seconds)
            else:
                logger.warning("watching %s failed: %s", kind, e)
                await asyncio.sleep(TUNABLES.error_backoff_seconds)
        except Exception as e:  # a dropped connection, a restarting API server: list again soon
            logger.warning("watching %s failed: %r", kind, e)
            await asyncio.sleep(TUNABLES.error_backoff_seconds)


def start(on_change: OnChange) -> list[asyncio.Task[None]]:
    """One task per child kind and namespace in scope."""
    return [
        asyncio.get_running_loop().create_task(
            inform(av, plural, kind, ns, on_change), name=f"inform-{plural}"
        )
        for av, plural, kind in CHILDREN
        for ns in scope.namespaces()
    ]
