"""The e2e suite: a real cluster from the current kubeconfig (kind + the Kubeflow training operator).

Runs only with ``pytest --e2e`` (see docs/e2e.md). The operator runs in-process (a thread) against
the cluster unless LLMOPS_E2E_EXTERNAL_OPERATOR=1 says one is already deployed there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("LLMOPS_OPERATOR_RESYNC_SECONDS", "5")
