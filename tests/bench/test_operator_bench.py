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

    def bench(*args: str) -> dict:
        argv = [sys.executable, str(ROOT / "bench" / "operator_bench.py"), "--n", "3", *args]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=80)
        return json.loads(out.stdout.strip().splitlines()[-1])

    earlier = bench("--repeat", "1", "--parents-in-clock")  # the protocol before both sides started alike
    assert earlier["parents_in_clock"] and earlier["children"] == 33 and earlier["operator_s"] > 0
    result = bench("--repeat", "2")
    assert result["n"] == 3 and result["children"] == 33 and result["rounds"] == 2
    assert not result["parents_in_clock"]
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    assert len(result["seconds"]) == 2 and all(b > 0 and o > 0 for b, o in result["seconds"])
    assert result["ratio"] in result["ratios"]  # the median round's
    assert result["operator_cpu_s"] > 0 and result["operator_peak_rss_mib"] > 50
