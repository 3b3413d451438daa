"""The e2e suite: a real cluster from the current kubeconfig (kind + the Kubeflow training operator).

Runs only with ``pytest --e2e`` (see docs/e2e.md). The operator runs in-process (a thread) against
the cluster unless LLMOPS_E2E_EXTERNAL_OPERATOR=1 says one is already deployed there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmops_operator.controller.settings import TUNABLES

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def resync_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    # the in-process operator's periodic pass restores unwatched children (e.g. a deleted Role)
    monkeypatch.setattr(TUNABLES, "resync_seconds", 5.0)
