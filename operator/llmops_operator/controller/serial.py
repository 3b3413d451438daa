"""One reconcile at a time per object, and at most one waiting: a burst of events costs two passes.

A caller that finds another already waiting returns at once: the waiting pass starts after the
current one and sees state at least as new, which is all a level-based reconcile needs.

At most ``max_concurrent_passes`` passes run at once, over all objects. A pass holds its parent's
rendered children and the objects it reads and writes; when thousands of parents arrive at once
(a restart, a bulk apply) unbounded passes would all hold them while queueing for the same 50 API
connections, which costs memory and gains nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .settings import TUNABLES

T = TypeVar("T")
_locks: dict[tuple[int, Any], asyncio.Lock] = {}
_waiting: set[tuple[int, Any]] = set()
_slots: dict[int, asyncio.Semaphore] = {}  # per event loop


async def coalesced(key: Any, fn: Callable[[], Awaitable[T]], must_run: bool = False) -> T | None:
    """Run ``fn`` under ``key``'s lock; skip if a pass is already queued (unless ``must_run``)."""
    k = (id(asyncio.get_running_loop()), key)
    if k in _waiting and not must_run:
        return None
    lock = _locks.setdefault(k, asyncio.Lock())
    slots = _slots.setdefault(k[0], asyncio.Semaphore(TUNABLES.max_concurrent_passes))
    _waiting.add(k)
    try:
        async with lock, slots:
            _waiting.discard(k)
            return await fn()
    finally:
        _waiting.discard(k)
