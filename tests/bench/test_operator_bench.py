"""The operator benchmark runs end to end at a small N and reports what docs/benchmarks-operator.md cites."""

from __future__ import annotations

import asyncio
import datetime
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


def test_the_real_server_side_checks_every_child_existed_when_the_clock_stopped(monkeypatch):
    """The operator's side is timed on its parents' status alone; after the clock, one list per
    child kind must find every child, created no later than the last parent reported."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import operator_bench as ob

    docs = [{**d, "metadata": {**d["metadata"], "uid": "x"}} for d in ob.parents(2)]
    rendered = ob.rendered_children(docs)
    stop = datetime.datetime(2026, 11, 30, 12, 0, 10, tzinfo=datetime.timezone.utc).timestamp()

    def run(created: dict[tuple[str, str], str]) -> float:
        async def list_(url: str, selector: str) -> list[dict]:
            assert selector == "app.kubernetes.io/managed-by=llmops-operator"
            return [
                {"kind": kind, "metadata": {"name": name, "creationTimestamp": stamp}}
                for (kind, name), stamp in created.items()
                if url.endswith("/" + ob.kube.plural(kind))
            ]

        monkeypatch.setattr(ob.kube, "list_", list_)
        return asyncio.run(ob.children_created("default", rendered, stop))

    keys = [(c["kind"], c["metadata"]["name"]) for c in rendered]
    on_time = dict.fromkeys(keys, "2026-11-30T12:00:05Z") | {keys[-1]: "2026-11-30T12:00:10Z"}
    assert run(on_time) == stop
    with pytest.raises(RuntimeError, match=r"missing .*\(1\)"):
        run({k: t for k, t in on_time.items() if k != keys[3]})
    with pytest.raises(RuntimeError, match=r"created after that .*\(1\)"):
        run(on_time | {keys[0]: "2026-11-30T12:00:11Z"})
