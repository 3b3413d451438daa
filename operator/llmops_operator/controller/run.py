"""What ``llmops operator run`` calls: kopf's own run loop with our registry, settings and logging."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Sequence
from typing import Any

import kopf

from . import scope
from .handlers import REGISTRY
from .settings import TUNABLES, config

LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
logger = logging.getLogger(__name__)


def tune_gc() -> None:
    """Garbage collections sized for a process that holds thousands of long-lived objects.

    ``gc.freeze()`` moves everything imported at startup out of the collector's view, and a young
    generation of 2,000 objects (not 700) makes young collections rarer. kopf leaves each event's
    body and patches in reference cycles, which only a collection frees, so the young generation is
    not made larger still: at 2,000 + 2,000 parents (``bench/operator_bench.py``, emulator) the
    operator peaked at 220-228 MiB with 2,000, 233 MiB with 5,000 and 239-249 MiB with 10,000, for
    the same CPU (47-55 s in each run); with 700, 58.6 s. The caches hold bytes, which the collector
    does not track.
    """
    gc.freeze()
    gc.set_threshold(2_000, 10, 10)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (everywhere but Windows): its transports and TLS are
    compiled, where asyncio's are Python, and moving bytes to and from the API server was a fifth of
    the operator's CPU under load (docs/benchmarks-operator.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def quiet_kopf(verbose: bool) -> None:
    """kopf logs a line per handler per watch event ("Handler 'cache-trainingjobs' succeeded."): 20,000
    lines for 2,000 + 2,000 parents, formatted at the CPU's expense. Our passes log what happened
    (Created, Updated, Repaired, ...) themselves, so kopf's object lines below WARNING (its
    failures and retries stay) are kept for ``--verbose`` and ``--debug``."""
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if verbose else logging.WARNING)


def run(
    namespaces: Sequence[str] = (),
    all_namespaces: bool = False,
    liveness: str | None = None,
    log_format: str = "full",
    verbose: bool = False,
    debug: bool = False,
) -> None:
    """Run until SIGINT/SIGTERM, as the single active replica (the Deployment uses ``Recreate``).

    Settings are read here, not at import: ``LLMOPS_OPERATOR_*`` tunables and the operator
    configuration; a bad value stops the start with a ValueError naming it.
    """
    if not namespaces and not all_namespaces:
        raise ValueError("name at least one --namespace, or pass --all-namespaces")
    TUNABLES.load_env()
    config()
    scope.set_namespaces([] if all_namespaces else list(namespaces))
    kopf.configure(debug=debug, verbose=verbose, log_format=LOG_FORMATS[log_format], log_refkey="k8s")
    quiet_kopf(verbose or debug)
    tune_gc()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        kopf.run(
            loop=runner.get_loop(),
            registry=REGISTRY,
            clusterwide=all_namespaces,
            namespaces=list(namespaces),
            standalone=True,
            liveness_endpoint=liveness,
        )


async def operator(namespaces: Sequence[str] = (), **kwargs: Any) -> None:
    """The coroutine form, for embedding (tests, the benchmark): ``kopf.operator`` on our registry,
    with our informers scoped to the same namespaces (all when none are named)."""
    scope.set_namespaces(list(namespaces))
    await kopf.operator(registry=REGISTRY, namespaces=list(namespaces), clusterwide=not namespaces, **kwargs)


__all__ = ["LOG_FORMATS", "loop_factory", "operator", "quiet_kopf", "run", "tune_gc"]
