"""Tunables of the operator, from ``LLMOPS_OPERATOR_*`` environment variables (read at import)."""

from __future__ import annotations

import dataclasses
import os

from llmops_core.config import OperatorConfig


def _float(name: str, default: float) -> float:
    return float(os.environ.get(f"LLMOPS_OPERATOR_{name}", default))


@dataclasses.dataclass
class Tunables:
    resync_seconds: float = _float("RESYNC_SECONDS", 60)  # the periodic level-based pass
    crd_retry_seconds: float = _float("CRD_RETRY_SECONDS", 60)  # PyTorchJob CRD missing
    error_backoff_seconds: float = _float("ERROR_BACKOFF_SECONDS", 5)  # API errors in handlers
    watch_inactivity_seconds: float = _float("WATCH_INACTIVITY_SECONDS", 600)


TUNABLES = Tunables()
_config: OperatorConfig | None = None


def config() -> OperatorConfig:
    """The operator configuration (images, storage class, defaults), loaded once from env/file."""
    global _config
    if _config is None:
        _config = OperatorConfig.load()
    return _config


def set_config(value: OperatorConfig | None) -> None:
    global _config
    _config = value
