"""Watch our parents and their children: feed the cache, and reconcile the parent a child belongs to.

A child's status change (a PyTorchJob finishing, a Deployment becoming ready, the trainer writing the
progress ConfigMap) reaches the parent's status within one pass; a child deleted or edited by hand is
restored by the same pass.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from llmops_core.api import GROUP, VERSION

from . import cache, inference, training
from .common import Outcome
from .registry import REGISTRY

logger = logging.getLogger(__name__)

OURS = {"app.kubernetes.io/managed-by": "llmops-operator"}
CHILDREN = [
    ("kubeflow.org", "v1", "pytorchjobs"),
    ("apps", "v1", "deployments"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
]
PARENT_LABELS = {
    "llmops.dev/trainingjob": training.reconcile,
    "llmops.dev/inferenceendpoint": inference.reconcile,
}


@kopf.on.event(GROUP, VERSION, "trainingjobs", id="cache-trainingjobs", registry=REGISTRY)
@kopf.on.event(GROUP, VERSION, "inferenceendpoints", id="cache-inferenceendpoints", registry=REGISTRY)
async def parent_event(event: dict[str, Any], **_: Any) -> None:
    cache.observe(event)


async def child_event(event: dict[str, Any], **_: Any) -> None:
    if not cache.observe(event):
        return  # the echo of a write this operator made and already accounted for
    meta = (event.get("object") or {}).get("metadata") or {}
    labels, ns = meta.get("labels") or {}, meta.get("namespace")
    for label, reconcile in PARENT_LABELS.items():
        parent = labels.get(label)
        if parent and ns:
            try:
                await reconcile(ns, parent, "watch")
            except Outcome as e:
                logger.info("%s/%s: %s", ns, parent, e)
            except Exception as e:  # a failed pass is retried by the periodic resync
                logger.warning("reconciling %s/%s after a child event failed: %r", ns, parent, e)


for _group, _version, _plural in CHILDREN:
    kopf.on.event(_group, _version, _plural, labels=OURS, id=f"watch-{_plural}", registry=REGISTRY)(
        child_event
    )
