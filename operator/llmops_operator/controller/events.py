"""Kubernetes Events for what happened to a resource, written with our own client.

Events come from every pass, not only from kopf's handlers (the periodic pass and child watches have
no kopf context), so they are posted directly, in the background: an event is never worth failing or
delaying a reconcile for. As client-go's event recorder does, they go through one bounded queue that
a few writers drain: when thousands of parents arrive at once, their children and status writes keep
the connections, the Events follow, each stamped with the time it happened, and a queue that is full
drops new Events (with a warning) rather than holding memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from . import conditions, kube

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 8192  # Events waiting (about 1 KiB each); client-go's recorder holds 1,000
WRITERS = 2  # Events written at once; client-go's recorder writes one at a time


class _Sink:
    """The queue and its writers, on the event loop that made them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
        self.dropping = False
        self.writers = [loop.create_task(self._drain()) for _ in range(WRITERS)]

    async def _drain(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await kube.request("POST", kube.path("v1", "events", event["metadata"]["namespace"]), event)
            except Exception as e:  # whatever a write raises, this writer must live on for the next
                logger.debug(
                    "event %s for %s not written: %s", event["reason"], event["involvedObject"]["name"], e
                )
            finally:
                self.queue.task_done()

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
            self.dropping = False
        except asyncio.QueueFull:
            if not self.dropping:
                logger.warning(
                    "%d Events are waiting to be written: dropping new ones until they drain", QUEUE_LIMIT
                )
            self.dropping = True


_sink: _Sink | None = None


def post(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Created, Updated, Repaired, Invalid, …: one word of reason, a sentence of message."""
    global _sink
    meta = body.get("metadata") or {}
    logger.info("%s %s/%s: %s", reason, meta.get("namespace"), meta.get("name"), message)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # outside the operator (unit tests): the log line is all
        return
    if _sink is None or _sink.loop is not loop:
        _sink = _Sink(loop)
    _sink.put(event(body, reason, message, warning))


def event(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> dict[str, Any]:
    """The Event object for ``body``, stamped now."""
    meta = body["metadata"]
    now = conditions.now()
    return {
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
