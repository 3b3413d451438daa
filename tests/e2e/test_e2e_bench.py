"""The operator benchmark's real-server path runs end to end at a small N (docs/benchmarks-operator.md
cites its N = 2,000 runs): the parents seen on watches, the children checked after the clock, the API
server's request counts, the clean-up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.e2e


@pytest.mark.timeout(300)
def test_operator_bench_on_the_real_api_server():
    argv = [sys.executable, str(ROOT / "bench" / "operator_bench.py"), "--n", "3", "--repeat", "1"]
    argv += ["--kubeconfig", os.environ["KUBECONFIG"], "--timeout", "120"]
    out = subprocess.run(
        argv, env={**os.environ, "BENCH_VERBOSE": "1"}, capture_output=True, text=True, timeout=280
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["api_server"].startswith("real") and result["children"] == 33
    assert result["baseline_s"] > 0 and result["operator_s"] > 0 and result["operator_peak_rss_mib"] > 30
    counts = {
        side: line
        for line in out.stderr.splitlines()
        for side in ("baseline", "operator")
        if line.startswith(side + ": API")
    }
    assert "POST pytorchjobs 3" in counts["baseline"]  # the bare client made the children
    assert "POST pytorchjobs 3" in counts["operator"] and "PATCH trainingjobs/status" in counts["operator"]
    # the children were listed after the clock and found, none created after the last status
    assert re.search(r"^operator: children \d+s \(server clock\), status [\d.]+s$", out.stderr, re.M)
    # both sides start with the parents made: neither clock holds their creation
    assert "POST trainingjobs" not in counts["baseline"] and "POST trainingjobs" not in counts["operator"]
    # each side's Service IP allocations (the API server's, one at a time) and the control plane's CPU
    for side in ("baseline", "operator"):
        allocated = rf"^{side}: (\d+) Service IPs allocated, one at a time, .* kube-apiserver [\d.]+,"
        found = re.search(allocated, out.stderr, re.M)
        assert found and int(found[1]) >= 3, out.stderr[-2000:]  # the 3 endpoints' Services
