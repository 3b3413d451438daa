"""What ``llmops operator run`` calls: kopf's own run loop with our registry, settings and logging."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import kopf

from .registry import REGISTRY

LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
logger = logging.getLogger(__name__)


def run(
    namespaces: Sequence[str] = (),
    all_namespaces: bool = False,
    peering: str | None = None,
    priority: int = 0,
    liveness: str | None = None,
    log_format: str = "full",
    verbose: bool = False,
    debug: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM. Standalone unless ``peering`` names a kopf peering object (HA)."""
    if not namespaces and not all_namespaces:
        raise ValueError("name at least one --namespace, or pass --all-namespaces")
    kopf.configure(debug=debug, verbose=verbose, log_format=LOG_FORMATS[log_format], log_refkey="k8s")
    kopf.run(
        registry=REGISTRY,
        clusterwide=all_namespaces,
        namespaces=list(namespaces),
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        liveness_endpoint=liveness,
    )


async def operator(**kwargs: object) -> None:
    """The coroutine form, for embedding (tests, the benchmark): ``kopf.operator`` on our registry."""
    await kopf.operator(registry=REGISTRY, **kwargs)  # type: ignore[arg-type]


__all__ = ["LOG_FORMATS", "operator", "run"]
