"""``llmops dev up --simulated`` on the running simulated cluster: reused, and its last line is
the ``export KUBECONFIG=...`` a shell can eval."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_dev_up_simulated_reuses_the_cluster_and_prints_kubeconfig_last(e2e_cluster):
    if e2e_cluster is None:
        pytest.skip("runs on the simulated cluster only (LLMOPS_E2E_CLUSTER=current is set)")
    proc = subprocess.run(
        [sys.executable, "-m", "llmops", "dev", "up", "--simulated", "--no-operator"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={e2e_cluster.kubeconfig}"
    assert "reusing the running simulated cluster" in proc.stderr
