"""Benchmark: render time of the shipped examples, this tree against another git revision.

    python bench/render_bench.py                       # this tree against HEAD
    python bench/render_bench.py --baseline 633de30    # against any revision

Each side runs in its own subprocess (its own imports, caches warmed by one render first), rendering
every example in ``manifests/examples/`` in a loop; rounds alternate baseline and current, so both see
the same machine load. Reported: CPU microseconds per example render for each side and the median of
the per-round ratios current/baseline (the goal is <= 2).
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "operator", "training-jobs", "inference-service")

# Runs in the child: PYTHONPATH decides which tree's renderer it measures.
MEASURE = """
import json, sys, time, yaml
from pathlib import Path
from llmops_core import api
from llmops_core.config import OperatorConfig
from llmops_operator.render import render
docs = [d for p in sorted(Path(sys.argv[1]).glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
resources = [api.load(d) for d in docs]
config = OperatorConfig()
resolved = {r.metadata.name: r.spec.output.location for r in resources if r.kind == "TrainingJob"}
def once():
    for r in resources:
        render(r, config, resolved.get(getattr(r.spec.model, "from_training_job", None)) or "pvc://m/x")
once()
loops = int(sys.argv[2])
start = time.process_time()
for _ in range(loops):
    once()
print(json.dumps((time.process_time() - start) / (loops * len(resources)) * 1e6))
"""


def baseline_tree(rev: str, into: Path) -> Path:
    """The revision's source packages, unpacked (no worktree, no checkout of anything else)."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, *PACKAGES], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def measure(tree: Path, loops: int) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / p) for p in PACKAGES)}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(ROOT / "manifests" / "examples"), str(loops)],
        env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    return float(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline_tree(args.baseline, Path(tmp))
        ratios, base_us, cur_us = [], [], []
        for i in range(args.rounds):
            b, c = measure(base, args.loops), measure(ROOT, args.loops)
            base_us.append(b)
            cur_us.append(c)
            ratios.append(c / b)
            print(f"round {i + 1}: baseline {b:.0f} us, current {c:.0f} us, ratio {c / b:.2f}", flush=True)
    print(
        f"median per example render: baseline ({args.baseline}) {statistics.median(base_us):.0f} us, "
        f"current {statistics.median(cur_us):.0f} us; current/baseline {statistics.median(ratios):.2f} "
        f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
