"""Tunables of the operator and its configuration, both loaded when the operator starts (not at import)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from llmops_core.config import OperatorConfig

ENV_PREFIX = "LLMOPS_OPERATOR_"


@dataclasses.dataclass
class Tunables:
    resync_seconds: float = 60  # the periodic level-based pass
    crd_retry_seconds: float = 60  # PyTorchJob CRD missing
    error_backoff_seconds: float = 5  # API errors in handlers
    watch_inactivity_seconds: float = 600
    watch_timeout_seconds: int = 300  # each child watch request; then it resumes from its resourceVersion
    max_concurrent_passes: int = 100  # reconciles running at once (each holds its parent's objects)

    def load_env(self, environ: Mapping[str, str] | None = None) -> None:
        """Set each tunable from ``LLMOPS_OPERATOR_<NAME>``; a bad value is a one-line ValueError."""
        environ = os.environ if environ is None else environ
        for field in dataclasses.fields(self):
            name = ENV_PREFIX + field.name.upper()
            if name in environ:
                try:
                    value = float(environ[name])
                except ValueError:
                    raise ValueError(f"{name}: expected a number, got {environ[name]!r}") from None
                if value <= 0:
                    raise ValueError(f"{name}: must be positive, got {environ[name]!r}")
                setattr(self, field.name, type(getattr(self, field.name))(value))


TUNABLES = Tunables()
_config: OperatorConfig | None = None


def config() -> OperatorConfig:
    """The operator configuration (images, storage class, defaults), loaded once from env/file."""
    global _config
    if _config is None:
        _config = OperatorConfig.load()
    return _config
