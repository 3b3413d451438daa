"""Kubernetes Events for what happened to a resource, written with our own client.

Events come from every pass, not only from kopf's handlers (the periodic pass and child watches have
no kopf context), so they are posted directly, in the background: an event is never worth failing or
delaying a reconcile for.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import aiohttp

from . import conditions, kube

logger = logging.getLogger(__name__)
_pending: set[asyncio.Task[None]] = set()


def post(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Created, Updated, Repaired, Invalid, …: one word of reason, a sentence of message."""
    meta = body.get("metadata") or {}
    logger.info("%s %s/%s: %s", reason, meta.get("namespace"), meta.get("name"), message)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # outside the operator (unit tests): the log line is all
        return
    task = loop.create_task(_write(body, reason, message, warning))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _write(body: dict[str, Any], reason: str, message: str, warning: bool) -> None:
    meta = body["metadata"]
    now = conditions.now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": "llmops-operator"},
        "reportingComponent": "llmops-operator",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await kube.create(kube.path("v1", "events", meta["namespace"]), event)
    except (kube.ApiError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:  # refused, or no server
        logger.debug("event %s for %s not written: %s", reason, meta["name"], e)
