"""The level-based safety net: every ``resync_seconds``, reconcile every parent the watches have seen.

A background task started at startup, not a kopf timer: kopf timers add a finalizer, and a finalizer
would block deletion while the operator is down. Errors are logged; the next pass tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from llmops_core.api import GROUP, VERSION

from . import cache, inference, training
from .common import Outcome
from .registry import REGISTRY
from .settings import TUNABLES

logger = logging.getLogger(__name__)
API_VERSION = f"{GROUP}/{VERSION}"
_tasks: dict[int, asyncio.Task[None]] = {}


async def resync_once() -> None:
    for kind, reconcile in (("TrainingJob", training.reconcile), ("InferenceEndpoint", inference.reconcile)):
        for body in cache.of_kind(API_VERSION, kind):
            meta = body["metadata"]
            try:
                await reconcile(meta["namespace"], meta["name"], "resync")
            except Outcome as e:
                logger.debug("%s/%s: %s", meta["namespace"], meta["name"], e)
            except Exception as e:
                logger.warning("resync of %s %s/%s failed: %r", kind, meta["namespace"], meta["name"], e)


async def _loop() -> None:
    while True:
        await asyncio.sleep(TUNABLES.resync_seconds)
        await resync_once()


@kopf.on.startup(id="resync", registry=REGISTRY)
async def start(**_: Any) -> None:
    cache.clear()
    loop = asyncio.get_running_loop()
    _tasks[id(loop)] = loop.create_task(_loop())


@kopf.on.cleanup(id="stop-resync", registry=REGISTRY)
async def stop(**_: Any) -> None:
    task = _tasks.pop(id(asyncio.get_running_loop()), None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    from . import kube

    await kube.close()
