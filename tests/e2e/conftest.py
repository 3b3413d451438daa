"""The e2e suite: a real API server, scheduler, garbage collector and the Kubeflow training operator.

Runs only with ``pytest --e2e`` (see docs/e2e.md). By default the session brings up the simulated
cluster (``llmops.dev.simulated``: the control plane built from source, fake EKS-shaped nodes) or
reuses a running one; ``LLMOPS_E2E_CLUSTER=current`` runs against the current kubeconfig instead
(kind). The operator runs in-process (a thread) per test module, except in
test_e2e_serviceaccount.py, which runs it as a separate process authenticated as its ServiceAccount.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from llmops_operator.controller.settings import TUNABLES

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def e2e_cluster(request: pytest.FixtureRequest):
    """The simulated cluster, up for the session (reused when running; left running if it was)."""
    if not request.config.getoption("--e2e") or os.environ.get("LLMOPS_E2E_CLUSTER") == "current":
        yield None
        return
    from llmops.dev import simulated

    def log(msg: str) -> None:
        print(f"[simulated] {msg}", file=sys.stderr)

    started = not simulated.Cluster().ready()
    t0 = time.monotonic()
    kubeconfig = simulated.up(operator=False, log=log)
    # the suite runs its own operators, one per test module: one from `llmops dev up` would compete
    if simulated.stop_operator():
        log("stopped the operator `llmops dev up --simulated` had started")
    log(f"cluster ready after {time.monotonic() - t0:.0f} s")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    from kubernetes.config import kube_config

    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)  # read from the env at import time
    yield simulated.Cluster()
    if started and not os.environ.get("LLMOPS_E2E_KEEP"):
        simulated.down(log=log)


@pytest.fixture(autouse=True)
def resync_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    # the in-process operator's periodic pass restores unwatched children (e.g. a deleted Role)
    monkeypatch.setattr(TUNABLES, "resync_seconds", 5.0)
