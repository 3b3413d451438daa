"""Start-up cost of the CLI: `llmops --help` and `llmops validate` against a bare `python -c pass`.

Each round runs every command once, in turn, as a fresh process with the same interpreter and
environment, so a busy machine slows all of them alike; ratios are of the medians. Both wall-clock
and CPU time (user + system of the child) are reported: on a shared machine CPU time is the steadier.
Two reference rows show the floor under `validate`: importing pydantic's BaseModel, and importing the
API models (llmops_core.api), which validation cannot do without.

Goal: within 3x a bare interpreter start. Run: python bench/cli.py [--rounds 21] [--before CHECKOUT]
(--before adds the same two commands run from another checkout's sources, e.g. an older one.)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("cli", "operator", "training-jobs", "inference-service")
EXAMPLES = sorted(str(p) for p in (ROOT / "manifests" / "examples").glob("*.yaml"))
# What the console script runs (`from llmops.main import cli; sys.exit(cli())`), without pip's wrapper.
ENTRY = "import sys; from llmops.main import cli; sys.exit(cli())"
BASE = "python -c pass"
COMMANDS = {
    BASE: [sys.executable, "-c", "pass"],
    "llmops --help": [sys.executable, "-c", ENTRY, "--help"],
    f"llmops validate ({len(EXAMPLES)} examples)": [sys.executable, "-c", ENTRY, "validate", *EXAMPLES],
    "(floor) from pydantic import BaseModel": [sys.executable, "-c", "from pydantic import BaseModel"],
    "(floor) import llmops_core.api": [sys.executable, "-c", "import llmops_core.api"],
}


def commands(before: Path | None) -> dict[str, tuple[list[str], str]]:
    """name → (command, PYTHONPATH)."""
    ours = os.pathsep.join(str(ROOT / s) for s in SOURCES)
    out = {name: (cmd, ours) for name, cmd in COMMANDS.items()}
    if before is not None:
        theirs = os.pathsep.join(str(before / s) for s in SOURCES)
        out["(before) llmops --help"] = (COMMANDS["llmops --help"], theirs)
        validate = next(n for n in COMMANDS if n.startswith("llmops validate"))
        out[f"(before) {validate[7:]}"] = (COMMANDS[validate], theirs)
    return out


def once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--before", type=Path, help="another checkout to compare with")
    args = parser.parse_args()
    runs = commands(args.before)
    envs = {name: {**os.environ, "PYTHONPATH": path} for name, (_, path) in runs.items()}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for name, (cmd, _) in runs.items():  # warm the file cache and the bytecode caches
        once(cmd, envs[name])
    for _ in range(args.rounds):
        for name, (cmd, _) in runs.items():
            wall, cpu = once(cmd, envs[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall, base_cpu = statistics.median(walls[BASE]), statistics.median(cpus[BASE])
    print(f"{args.rounds} rounds, {sys.executable}, Python {sys.version.split()[0]}")
    print(f"{'command':40} {'wall ms':>8} {'ratio':>6} {'cpu ms':>8} {'ratio':>6}")
    for name in runs:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(
            f"{name:40} {wall * 1000:8.1f} {wall / base_wall:5.2f}x {cpu * 1000:8.1f} {cpu / base_cpu:5.2f}x"
        )


if __name__ == "__main__":
    main()
