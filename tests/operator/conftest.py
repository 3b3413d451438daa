"""Operator tests: short resync and retry periods so the emulator tests converge in seconds."""

from __future__ import annotations

import pytest

from llmops_operator.controller.settings import TUNABLES


@pytest.fixture(autouse=True)
def short_periods(monkeypatch: pytest.MonkeyPatch) -> None:
    # set on the object, not through LLMOPS_OPERATOR_* variables: those are read once, at import,
    # and another folder's conftest may import the operator first (the full suite once ran these
    # tests with the e2e suite's 5 s resync and kopf's 60 s retry, and timed out)
    monkeypatch.setattr(TUNABLES, "resync_seconds", 1.5)
    monkeypatch.setattr(TUNABLES, "crd_retry_seconds", 1.0)
    monkeypatch.setattr(TUNABLES, "error_backoff_seconds", 0.5)


def pytest_configure(config):
    # kmock 0.8 reads its bundled resources with a deprecated importlib call
    config.addinivalue_line("filterwarnings", "ignore:read_binary is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    # the RBAC test checks every call the other emulator tests made: run it last
    items.sort(key=lambda item: "test_operator_rbac" in item.nodeid)
