"""Operator tests: short resync and retry periods so the emulator tests converge in seconds."""

from __future__ import annotations

import os

os.environ.setdefault("LLMOPS_OPERATOR_RESYNC_SECONDS", "1.5")
os.environ.setdefault("LLMOPS_OPERATOR_CRD_RETRY_SECONDS", "1")


def pytest_configure(config):
    # kmock 0.8 reads its bundled resources with a deprecated importlib call
    config.addinivalue_line("filterwarnings", "ignore:read_binary is deprecated:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    # the RBAC test checks every call the other emulator tests made: run it last
    items.sort(key=lambda item: "test_operator_rbac" in item.nodeid)
