"""Suite-wide options: the e2e suite runs only when asked for, against the current kubeconfig."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", help="run tests marked e2e against the current kubeconfig")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--e2e"):
        return
    skip = pytest.mark.skip(reason="needs a real cluster: run with --e2e (see docs/e2e.md)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)
