"""Kubernetes Events for what happened to a resource, posted through kopf's event queue."""

from __future__ import annotations

import logging
from typing import Any

import kopf

logger = logging.getLogger(__name__)


def post(body: dict[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Created, Updated, Repaired, Invalid, …: one word of reason, a sentence of message."""
    try:
        kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)
    except LookupError:  # outside kopf's context (unit tests): log only
        logger.info("event %s %s: %s", reason, body.get("metadata", {}).get("name"), message)
