"""The operator benchmark runs end to end at a small N and reports what docs/benchmarks-operator.md cites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.timeout(180)
def test_operator_bench_converges_and_reports_side_by_side():
    env = {**os.environ, "LLMOPS_OPERATOR_RESYNC_SECONDS": "600"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "operator_bench.py"), "--n", "3", "--repeat", "2"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=170,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 3 and result["children"] == 33 and result["rounds"] == 2
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    assert len(result["seconds"]) == 2 and all(b > 0 and o > 0 for b, o in result["seconds"])
    assert result["ratio"] in result["ratios"]  # the median round's
    assert result["operator_cpu_s"] > 0 and result["operator_peak_rss_mib"] > 50
