"""Benchmark: the operator converging N TrainingJobs and N InferenceEndpoints against kmock's emulator.

    python bench/operator_bench.py --n 50        # quick
    python bench/operator_bench.py --n 500       # the issue's upper bound

Baseline: the same rendered children (with owner references) POSTed directly by the operator's own
HTTP client (``controller.kube``, same connection limit) into a fresh emulator. Operator: a fresh
emulator, the real operator in a subprocess (so its peak RSS is its own), the N+N parents POSTed, the
clock stopped when every child exists and every parent's status says Stalled=False. Reports the ratio
operator/baseline (goal <= 2) and the operator's peak RSS.
"""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys

# Run as a script, this file's folder leads sys.path and its name would shadow the stdlib's operator.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import collections
import json
import resource
import subprocess
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in ("cli", "operator"):
    sys.path.insert(0, str(ROOT / p))

import aiohttp
import kmock

from llmops_operator import api, render
from llmops_operator.config import OperatorConfig
from llmops_operator.controller import children, kube

NS = "default"
VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]


class CountingEmulator(kmock.KubernetesEmulator):
    """The emulator, counting requests by (method, resource) for --verbose."""

    counts: collections.Counter[str]

    async def _handle(self, request):  # type: ignore[no-untyped-def]
        res = request.resource.plural if request.resource is not None else "-"
        watch = "watch" if request.params.get("watch") else ""
        self.counts[
            f"{request.method.value if hasattr(request.method, 'value') else request.method} {res} {watch}"
        ] += 1
        return await super()._handle(request)


def emulator() -> CountingEmulator:
    emu = CountingEmulator()
    emu.counts = collections.Counter()
    emu.resources.load_bundled()
    for plural, kind in (("trainingjobs", "TrainingJob"), ("inferenceendpoints", "InferenceEndpoint")):
        emu.resources[f"llmops.dev/v1alpha1/{plural}"] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=VERBS, subresources={"status"}
        )
    emu.resources["kubeflow.org/v1/pytorchjobs"] = kmock.ResourceInfo(
        kind="PyTorchJob", namespaced=True, verbs=VERBS, subresources={"status"}
    )
    return emu


def parents(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(
            {
                "apiVersion": "llmops.dev/v1alpha1",
                "kind": "TrainingJob",
                "metadata": {
                    "name": f"job{i}",
                    "namespace": NS,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": "1",
                    "generation": 1,
                },
                "spec": {
                    "model": {"preset": "tiny"},
                    "data": {"train": "/opt/llmops/data/corpus.txt"},
                    "resources": {"accelerator": "cpu", "acceleratorsPerNode": 1},
                    "checkpoint": {"volumeClaim": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
                    "output": {"location": f"pvc://job{i}-checkpoints/model"},
                },
            }
        )
        out.append(
            {
                "apiVersion": "llmops.dev/v1alpha1",
                "kind": "InferenceEndpoint",
                "metadata": {
                    "name": f"ep{i}",
                    "namespace": NS,
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": "1",
                    "generation": 1,
                },
                "spec": {
                    "model": {"location": "pvc://models/tiny-chat"},
                    "runtime": "llmops",
                    "resources": {"accelerator": "cpu"},
                    "replicas": {"min": 2, "max": 4},
                },
            }
        )
    return out


def rendered_children(docs: list[dict]) -> list[dict]:
    config = OperatorConfig.load()
    return [children.adopt(c, d) for d in docs for c in render.render(api.load(d), config)]


def count_children(emu: kmock.KubernetesEmulator) -> int:
    return sum(
        1
        for key, obj in list(emu.objects.items())
        if not obj.deleted
        and key[0].group != "llmops.dev"
        and ((obj.raw.get("metadata") or {}).get("ownerReferences"))
    )


def parents_done(emu: kmock.KubernetesEmulator) -> int:
    done = 0
    for key, obj in list(emu.objects.items()):
        if key[0].group == "llmops.dev" and not obj.deleted:
            conds = (obj.raw.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Stalled" and c.get("status") == "False" for c in conds):
                done += 1
    return done


async def baseline(n: int) -> float:
    docs = parents(n)
    kids = rendered_children(docs)
    emu = emulator()
    async with emu, kmock.Server(emu) as server:
        kube.configure(kube.Connection(server=str(server.url)))
        t0 = time.perf_counter()
        await asyncio.gather(*(kube.create(children.url_of(c, named=False), c) for c in kids))
        elapsed = time.perf_counter() - t0
        await kube.close()
        assert count_children(emu) == len(kids), (count_children(emu), len(kids))
    return elapsed


async def with_operator(n: int, timeout: float) -> tuple[float, int, int]:
    docs = parents(n)
    expected = len(rendered_children(docs))
    emu = emulator()
    async with emu, kmock.Server(emu) as server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "cli"), str(ROOT / "operator")])}
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(server.url)], env=env, text=True)
        try:
            await asyncio.sleep(3)  # kopf starts its watches
            async with aiohttp.ClientSession(base_url=str(server.url)) as s:
                t0 = time.perf_counter()
                for d in docs:
                    url = kube.path(d["apiVersion"], kube.plural(d["kind"]), NS)
                    async with s.post(url, json=d) as r:
                        assert r.status < 400, await r.text()
                posted = time.perf_counter() - t0
                kids_at = None
                while count_children(emu) < expected or parents_done(emu) < len(docs):
                    if kids_at is None and count_children(emu) >= expected:
                        kids_at = time.perf_counter() - t0
                    if time.perf_counter() - t0 > timeout:
                        raise TimeoutError(
                            f"{count_children(emu)}/{expected} children, {parents_done(emu)}/{len(docs)} parents"
                        )
                    await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - t0
                if os.environ.get("BENCH_VERBOSE"):
                    print(
                        f"parents posted {posted:.2f}s, children {kids_at}s, status {elapsed:.2f}s",
                        file=sys.stderr,
                    )
        finally:
            proc.kill()
            await asyncio.to_thread(proc.wait)
        if os.environ.get("BENCH_VERBOSE"):
            print(json.dumps(emu.counts.most_common(30)), file=sys.stderr)
        # the peak RSS of the largest waited-for child: the operator process (the only child)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, rss, expected


def serve(url: str) -> None:
    """The operator process: kopf on our registry against ``url`` until killed."""
    import logging

    from llmops_operator.controller import run

    logging.basicConfig(level=logging.WARNING)
    kube.configure(kube.Connection(server=url))
    asyncio.run(run.operator(clusterwide=True, standalone=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=50, help="TrainingJobs and as many InferenceEndpoints (<= 500)"
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    base = asyncio.run(baseline(args.n))
    op, rss, kids = asyncio.run(with_operator(args.n, args.timeout))
    result = {
        "n": args.n,
        "children": kids,
        "baseline_s": round(base, 2),
        "operator_s": round(op, 2),
        "ratio": round(op / base, 2),
        "operator_peak_rss_mib": round(rss / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
