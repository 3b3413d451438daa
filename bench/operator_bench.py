"""Benchmark: the operator converging N TrainingJobs and N InferenceEndpoints against kmock's emulator.

    python bench/operator_bench.py --n 100              # ~30 s
    python bench/operator_bench.py --n 500 --repeat 5   # ~2 minutes

Both sides start alike: a fresh emulator holding the N+N parents and none of their children.
Baseline: the parents' rendered children (with owner references) POSTed concurrently by the
operator's own HTTP client (``controller.kube``, same connection limit). Operator: the real operator
started as the clock starts, in a subprocess that imports only what it needs (its CPU and peak RSS
are its own), the clock stopped when every child exists and every parent's status says
Stalled=False. ``--parents-in-clock`` starts the operator first and times POSTing the parents too, as
the benchmark did before (the baseline's clock never held them).
Rounds alternate baseline and operator; the median round's ratio operator/baseline (goal <= 2) is
reported with every round's ratio, both sides' CPU seconds and the operator's peak RSS.
The emulator is ``tests/operator/lean_emulator.py`` (kmock's, made linear): see docs/benchmarks-operator.md.

With ``--kubeconfig PATH`` the same runs against a real API server instead (the simulated cluster of
``llmops dev up --simulated --no-operator``, docs/e2e.md), each round in fresh namespaces:

    python bench/operator_bench.py --kubeconfig "$KUBECONFIG" --n 500 --repeat 1
    python bench/operator_bench.py --simulated --n 2000 --repeat 3 --timeout 2400   # ~35 minutes

``--simulated`` gives each side a fresh simulated cluster of its own (it stops a running one first and
the last one at the end), so neither side meets the garbage collection or the controllers' backlog
that the side before it left; without it, the sides share the cluster behind ``--kubeconfig`` and the
benchmark waits up to 15 minutes for each side's namespace to be deleted.

Baseline there: the parents created first (untimed, no operator running), then their rendered children
POSTed concurrently with admin credentials. Operator: the parents created first (untimed) in the same
way, then ``llmops operator run --namespace NS`` started in a subprocess (kubeconfig credentials), the
clock stopped when every parent says Stalled=False, seen on a watch of the parents (listing them
all each second would load the server under test). The operator writes that only once each child
exists; the benchmark checks it after the clock, with one list per child kind: every child must
exist, created no later than the server's clock when the last parent reported (whole seconds).
Watching every child kind as well cost this process 10-14 s of CPU inside the operator's clock, on
the cores the API server needs, which the baseline's clock never held (docs/benchmarks-operator.md).
With ``BENCH_VERBOSE=1`` it also prints the API server's requests during each side's clock, by verb
and resource (``apiserver_request_total`` from its ``/metrics``, read before and after), the time it
spent allocating Service IPs (one at a time: both sides' clocks are nearly all that), the CPU of the
machine and of each control-plane process on it, and every 10 s of the operator's side the reconciled
parents seen so far and the operator's CPU.
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
import contextlib
import datetime
import email.utils
import json
import re
import resource
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in ("cli", "operator", "tests/operator"):
    sys.path.insert(0, str(ROOT / p))

import kmock
from lean_emulator import LeanEmulator, declare

from llmops_core import api
from llmops_core.config import OperatorConfig
from llmops_operator import render
from llmops_operator.controller import children, kube
from llmops_operator.controller.connection import open_url
from llmops_operator.controller.informer import SELECTOR

NS = "default"


class CountingEmulator(LeanEmulator):
    """The emulator, counting requests by verb and resource, and tracking progress as writes land
    (children created, parents reconciled), so that waiting for convergence costs no scans."""

    counts: collections.Counter[str]
    children: set[tuple[str, str]]
    parents_done: set[tuple[str, str]]

    async def _handle(self, request):  # type: ignore[no-untyped-def]
        res = request.resource.plural if request.resource is not None else "-"
        watch = "watch" if request.params.get("watch") else ""
        self.counts[
            f"{request.method.value if hasattr(request.method, 'value') else request.method} {res} {watch}"
        ] += 1
        response = await super()._handle(request)
        if response.status < 400 and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            self._track(request)
        return response

    def _track(self, request) -> None:  # type: ignore[no-untyped-def]
        data = request.data if isinstance(request.data, dict) else {}
        name = request.name or (data.get("metadata") or {}).get("name")
        if request.resource.group != "llmops.dev":
            if (data.get("metadata") or {}).get("ownerReferences"):
                self.children.add((request.resource.plural, name))
            return
        obj = self.objects[request.resource, request.namespace or NS, name]
        conditions = (obj.raw.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Stalled" and c.get("status") == "False" for c in conditions):
            self.parents_done.add((request.resource.plural, name))


def emulator() -> CountingEmulator:
    emu = CountingEmulator()
    emu.counts, emu.children, emu.parents_done = collections.Counter(), set(), set()
    declare(emu)
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


def count_children(emu: CountingEmulator) -> int:
    return len(emu.children)


def parents_done(emu: CountingEmulator) -> int:
    return len(emu.parents_done)


def cli_env() -> dict[str, str]:
    """The environment for a subprocess that runs the CLI or the operator from this checkout."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("cli", "operator"))}


def _cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) of this process, or of ``pid`` (Linux /proc)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """The operator process's peak RSS so far (VmHWM). Not ``getrusage(RUSAGE_CHILDREN)``: Linux
    carries a process's peak across ``exec``, so that counts this benchmark's own memory, which the
    operator process had before it exec'd the interpreter."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


async def gather_limited(coros, limit: int = 50) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def create_parents(docs: list[dict], ns: str) -> list[dict]:
    """POST the parents, 50 at a time (the client's connection limit): the API server's copies."""
    return await gather_limited(
        kube.create(kube.path(d["apiVersion"], kube.plural(d["kind"]), ns), d) for d in docs
    )


async def baseline(n: int) -> tuple[float, float]:
    docs = parents(n)
    kids = rendered_children(docs)
    emu = emulator()
    async with emu, kmock.Server(emu) as server:
        kube.configure(kube.Connection(server=str(server.url)))
        await create_parents(docs, NS)
        t0, cpu0 = time.perf_counter(), _cpu()
        await asyncio.gather(*(kube.create(children.url_of(c, named=False), c) for c in kids))
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        await kube.close()
        assert count_children(emu) == len(kids), (count_children(emu), len(kids))
    return elapsed, cpu


async def with_operator(
    n: int, timeout: float, parents_in_clock: bool
) -> tuple[float, int, int, dict[str, float]]:
    docs = parents(n)
    expected = len(rendered_children(docs))
    emu = emulator()
    async with emu, kmock.Server(emu) as server:
        kube.configure(kube.Connection(server=str(server.url)))
        argv = [sys.executable, "-c", SERVE, str(server.url)]
        proc = subprocess.Popen(argv, env=cli_env()) if parents_in_clock else None
        try:
            if proc is not None:
                await asyncio.sleep(5)  # kopf starts its watches
            else:
                await create_parents(docs, NS)  # as the baseline's parents: there before its clock
            t0, cpu0, op_cpu0 = time.perf_counter(), _cpu(), _cpu(proc.pid) if proc else 0.0
            if proc is None:
                proc = subprocess.Popen(argv, env=cli_env())  # the operator starts inside the clock
            else:
                await create_parents(docs, NS)
            started = time.perf_counter() - t0  # the operator process, or the parents' POSTs
            kids_at = None
            while count_children(emu) < expected or parents_done(emu) < len(docs):
                if kids_at is None and count_children(emu) >= expected:
                    kids_at = time.perf_counter() - t0
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(
                        f"{count_children(emu)}/{expected} children, {parents_done(emu)}/{len(docs)} parents"
                    )
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - t0
            cpu = {"emulator_cpu_s": _cpu() - cpu0, "operator_cpu_s": _cpu(proc.pid) - op_cpu0}
            rss = peak_rss_kib(proc.pid)
            if os.environ.get("BENCH_VERBOSE"):
                print(
                    f"{'parents posted' if parents_in_clock else 'operator started'} {started:.2f}s, "
                    f"children {kids_at}s, status {elapsed:.2f}s",
                    file=sys.stderr,
                )
        finally:
            if proc is not None:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            await kube.close()
        if os.environ.get("BENCH_VERBOSE"):
            print(json.dumps(emu.counts.most_common(30)), file=sys.stderr)
    return elapsed, rss, expected, cpu


# ---- against a real API server ---------------------------------------------------------------------


def real_parents(n: int, ns: str) -> list[dict]:
    docs = parents(n)
    for d in docs:
        d["metadata"] = {"name": d["metadata"]["name"], "namespace": ns}
    return docs


async def real_namespace() -> str:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


def child_kinds(kids: list[dict]) -> collections.Counter[tuple[str, str]]:
    return collections.Counter((c["apiVersion"], c["kind"]) for c in kids)


async def real_baseline(n: int, cleanup: float | None) -> tuple[float, float]:
    kube.configure(kube.from_environment())
    ns = await real_namespace()
    try:
        docs = real_parents(n, ns)
        made = await create_parents(docs, ns)
        config = OperatorConfig.load()
        kids = [children.adopt(c, p) for p in made for c in render.render(api.load(p), config)]
        served = await served_since()
        t0, cpu0 = time.perf_counter(), _cpu()
        await gather_limited(kube.create(children.url_of(c, named=False), c) for c in kids)
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
        await served_since(served, "baseline", elapsed)
    finally:
        if cleanup is not None:
            await delete_namespace(ns, cleanup)
        await kube.close()
    return elapsed, cpu


async def delete_namespace(ns: str, timeout: float) -> None:
    """Delete and wait until it is gone (``timeout=0``: do not wait): the garbage collection of
    thousands of objects would otherwise load the API server during the next measurement. Each
    side's ``cleanup`` is this timeout, or None to leave the namespace to a cluster that goes next."""
    await kube.request("DELETE", f"/api/v1/namespaces/{ns}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await kube.request("GET", f"/api/v1/namespaces/{ns}")
        except kube.ApiError as e:
            if e.status == 404:
                return
            raise
        await asyncio.sleep(2)


# The control plane's processes by their /proc name (15 characters at most), for the CPU they spend.
COMPONENTS = (
    "kube-apiserver",
    "etcd",
    "kube-controller",
    "kube-scheduler",
    "kwok-controller",
    "training-operat",
)
# ClusterIP allocations (count, seconds): the API server makes them one at a time (see the docs page)
ALLOCATIONS = "kube_apiserver_clusterip_allocator_allocation_duration_seconds_"


def api_requests() -> collections.Counter[str]:
    """The API server's requests served so far, by "VERB resource[/subresource]" (its /metrics), and,
    under keys starting "~", its ClusterIP allocations, their milliseconds, and the CPU milliseconds of
    this machine (busy, idle) and of each control-plane process running on it."""
    with open_url(kube.from_environment(), "/metrics", timeout=60) as resp:
        text = resp.read().decode()
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        value = float(line.rsplit(" ", 1)[-1]) if line[:1].isalpha() else 0.0
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            what = "/".join(x for x in (labels.get("resource"), labels.get("subresource")) if x)
            counts[f"{labels.get('verb')} {what}"] += int(value)
        elif line.startswith(ALLOCATIONS + "count"):
            counts["~allocations"] += int(value)
        elif line.startswith(ALLOCATIONS + "sum"):
            counts["~allocation ms"] += int(value * 1000)
    tick = os.sysconf("SC_CLK_TCK")
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    counts["~busy ms"] += (sum(cpu) - cpu[3] - cpu[4]) * 1000 // tick
    counts["~idle ms"] += (cpu[3] + cpu[4]) * 1000 // tick
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            name, fields = stat.read_text()[:-1].split("(", 1)[1].rsplit(") ", 1)
            if name in COMPONENTS:
                fields = fields.split()
                counts[f"~{name}"] += (int(fields[11]) + int(fields[12])) * 1000 // tick
    return counts


async def served_since(
    before: collections.Counter[str] | None = None, side: str = "", elapsed: float = 0.0
) -> collections.Counter[str] | None:
    """With BENCH_VERBOSE: the API server's request counts now; given ``before``, print what a side
    made the server serve since then (its own requests and the controllers' work they caused), how
    long the API server spent allocating Service IPs in the side's ``elapsed`` seconds, and the CPU
    the machine and the control plane spent meanwhile."""
    if not os.environ.get("BENCH_VERBOSE"):
        return None
    now = await asyncio.to_thread(api_requests)
    if before is not None:
        served = now - before
        requests = collections.Counter({k: v for k, v in served.items() if not k.startswith("~")})
        top = ", ".join(f"{what} {n}" for what, n in requests.most_common(30))
        print(f"{side}: API requests {sum(requests.values())} in all; {top}", file=sys.stderr)
        allocating = served["~allocation ms"] / 1000
        cpu = ", ".join(f"{name} {served['~' + name] / 1000:.1f}" for name in COMPONENTS)
        print(
            f"{side}: {served['~allocations']} Service IPs allocated, one at a time, in {allocating:.1f} s "
            f"({allocating / max(elapsed, 1e-9):.0%} of the clock); CPU seconds: the machine busy "
            f"{served['~busy ms'] / 1000:.0f}, idle {served['~idle ms'] / 1000:.0f}; {cpu}",
            file=sys.stderr,
        )
    return now


def stalled_false(obj: dict) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Stalled" and c.get("status") == "False" for c in conds)


async def track(
    url: str, kind: str, rv: str, seen: set[tuple[str, str]], wanted: Callable[[dict], bool]
) -> None:
    """Add (kind, name) of each object of ``url`` that ``wanted`` accepts to ``seen``, from a watch.

    A watch costs the API server one encoding per event; listing every parent each second would cost
    thousands of objects' encoding per poll and load the server under test. A loaded API server
    closes a watcher that falls behind: the watch resumes where it stopped, or lists once if that is
    too old (410).
    """
    while True:
        try:
            async for ev in kube.watch(url, rv, None, timeout=3600):
                obj = ev.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if ev.get("type") in ("ADDED", "MODIFIED") and wanted(obj):
                    seen.add((kind, obj["metadata"]["name"]))
        except kube.Gone:
            items, rv = await kube.list_page(url)
            seen.update((kind, obj["metadata"]["name"]) for obj in items if wanted({**obj, "kind": kind}))


def server_time() -> float:
    """The API server's clock now (its ``Date`` header, whole seconds), as epoch seconds."""
    with open_url(kube.from_environment(), "/version", timeout=60) as resp:
        return email.utils.parsedate_to_datetime(resp.headers["Date"]).timestamp()


async def children_created(ns: str, rendered: list[dict], stop: float) -> float:
    """After the clock: list each child kind once and check that every expected child exists and
    was created by ``stop`` (the server's clock when the last parent reported; both in whole
    seconds). Returns the latest creation, or raises naming what is missing or late."""
    expected = {(c["kind"], c["metadata"]["name"]) for c in rendered}
    created: dict[tuple[str, str], float] = {}
    for av, kind in child_kinds(rendered):
        for obj in await kube.list_(kube.path(av, kube.plural(kind), ns), SELECTOR):
            stamp = datetime.datetime.fromisoformat(  # Python 3.10 reads no "Z"
                obj["metadata"]["creationTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            created[(kind, obj["metadata"]["name"])] = stamp
    missing = sorted(expected - created.keys())
    late = sorted(k for k in expected & created.keys() if created[k] > stop)
    if missing or late:
        raise RuntimeError(
            f"every parent reported Stalled=False, but children missing {missing[:5]} "
            f"({len(missing)}) or created after that {late[:5]} ({len(late)})"
        )
    return max(created[k] for k in expected)


async def real_with_operator(
    n: int, timeout: float, cleanup: float | None, parents_in_clock: bool
) -> tuple[float, int, int, dict[str, float]]:
    kube.configure(kube.from_environment())
    ns = await real_namespace()
    docs = real_parents(n, ns)
    rendered = rendered_children([{**d, "metadata": {**d["metadata"], "uid": "x"}} for d in docs])
    argv = [sys.executable, "-m", "llmops", "operator", "run", f"--namespace={ns}", "--log-format=plain"]
    done: set[tuple[str, str]] = set()
    _, rv = await kube.list_page(kube.path("v1", "configmaps", ns))
    trackers = [
        asyncio.create_task(track(kube.path(av, kube.plural(kind), ns), kind, rv, done, stalled_false))
        for av, kind in {(d["apiVersion"], d["kind"]) for d in docs}
    ]

    def start() -> subprocess.Popen:
        return subprocess.Popen(argv, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    proc = start() if parents_in_clock else None
    try:
        if proc is not None:
            await asyncio.sleep(5)  # kopf starts its watches
        else:
            await create_parents(docs, ns)  # as the baseline's parents: there before its clock
        served = await served_since()
        started = await asyncio.to_thread(server_time)
        t0, cpu0, op_cpu0 = time.perf_counter(), _cpu(), _cpu(proc.pid) if proc else 0.0
        if proc is None:
            proc = start()  # the operator starts inside the clock
        else:
            await create_parents(docs, ns)
        trace_at = 0.0
        while len(done) < len(docs):
            if served is not None and time.perf_counter() - t0 >= trace_at:  # BENCH_VERBOSE: progress
                print(
                    f"operator: {time.perf_counter() - t0:5.0f}s status {len(done)}/{len(docs)}, "
                    f"operator CPU {_cpu(proc.pid) - op_cpu0:.1f}s",
                    file=sys.stderr,
                )
                trace_at += 10
            for t in trackers:
                if t.done():
                    raise RuntimeError("a watch failed before the run converged") from t.exception()
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{len(done)}/{len(docs)} parents reconciled")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - t0
        cpu = {"emulator_cpu_s": _cpu() - cpu0, "operator_cpu_s": _cpu(proc.pid) - op_cpu0}
        rss = peak_rss_kib(proc.pid)
        stop = await asyncio.to_thread(server_time)
        await served_since(served, "operator", elapsed)
        last = await children_created(ns, rendered, stop)
        if served is not None:
            print(
                f"operator: children {last - started:.0f}s (server clock), status {elapsed:.1f}s",
                file=sys.stderr,
            )
    finally:
        for t in trackers:
            t.cancel()
        if proc is not None:
            proc.terminate()
            await asyncio.to_thread(proc.wait)
        if cleanup is not None:
            await delete_namespace(ns, cleanup)
        await kube.close()
    return elapsed, rss, len(rendered), cpu


# The operator against the emulator, in a process that imports what the operator does and not the
# benchmark's emulator (`llmops operator run` lists namespaces, which kmock does not serve).
SERVE = """
import asyncio, logging, sys
sys.modules.setdefault("kubernetes", None)  # as `llmops operator run` does
from llmops_operator.controller import kube, run
logging.basicConfig(level=logging.WARNING)
kube.configure(kube.Connection(server=sys.argv[1]))
run.tune_gc()  # as `llmops operator run` does
asyncio.run(run.operator(standalone=True))
"""


def fresh_cluster(down_only: bool = False) -> str:
    """Stop the simulated cluster, and unless ``down_only`` bring up a new one without our operator:
    its kubeconfig path. Each side then starts from the same idle cluster: no garbage collection or
    controller backlog left by the side before it."""

    def dev(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "llmops", "dev", *args], env=cli_env(), capture_output=True, text=True
        )
        if proc.returncode:
            raise RuntimeError(f"llmops dev {' '.join(args)} failed: {proc.stderr.strip()[-1000:]}")
        return proc.stdout

    dev("down", "--simulated")
    if down_only:
        return ""
    return (
        dev("up", "--simulated", "--no-operator").strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    )


def one_round(args: argparse.Namespace, last: bool) -> tuple:
    """(ratio, baseline s, operator s, baseline CPU s, CPU s by process, operator peak RSS KiB, children)."""
    if args.simulated:
        os.environ["KUBECONFIG"] = fresh_cluster()
        base, base_cpu = asyncio.run(real_baseline(args.n, cleanup=None))
        os.environ["KUBECONFIG"] = fresh_cluster()
        op, rss, kids, cpu = asyncio.run(
            real_with_operator(args.n, args.timeout, None, args.parents_in_clock)
        )
    elif args.kubeconfig:
        base, base_cpu = asyncio.run(real_baseline(args.n, cleanup=900))
        wait = 0 if last else 900  # nothing is measured after the last side
        op, rss, kids, cpu = asyncio.run(
            real_with_operator(args.n, args.timeout, wait, args.parents_in_clock)
        )
    else:
        base, base_cpu = asyncio.run(baseline(args.n))
        op, rss, kids, cpu = asyncio.run(with_operator(args.n, args.timeout, args.parents_in_clock))
    return op / base, base, op, base_cpu, cpu, rss, kids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="TrainingJobs and as many InferenceEndpoints")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the median ratio is reported")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", metavar="PATH", help="a real API server instead of the emulator")
    where.add_argument(
        "--simulated",
        action="store_true",
        help="each side on a fresh simulated cluster (llmops dev up --simulated; stops a running one)",
    )
    parser.add_argument(
        "--parents-in-clock",
        action="store_true",
        help="the operator's clock also times POSTing the parents, which the baseline's does not (the "
        "protocol before the sides started alike; docs/benchmarks-operator.md)",
    )
    args = parser.parse_args()
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    rounds = []
    try:
        for i in range(args.repeat):  # alternated, so both sides see the same machine load
            rounds.append(one_round(args, last=i == args.repeat - 1))
    finally:
        if args.simulated:
            fresh_cluster(down_only=True)
    ratio, base, op, base_cpu, cpu, _, kids = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]  # median
    result = {
        "n": args.n,
        "api_server": "simulated cluster, fresh per side"
        if args.simulated
        else f"real ({args.kubeconfig})"
        if args.kubeconfig
        else "emulator",
        "children": kids,
        "rounds": len(rounds),
        "parents_in_clock": args.parents_in_clock,
        "ratios": [round(r[0], 2) for r in rounds],
        "seconds": [[round(r[1], 3), round(r[2], 3)] for r in rounds],  # each round's baseline, operator
        "baseline_s": round(base, 2),
        "operator_s": round(op, 2),
        "ratio": round(ratio, 2),
        "baseline_cpu_s": round(base_cpu, 2),
        "emulator_cpu_s": round(cpu["emulator_cpu_s"], 2),
        "operator_cpu_s": round(cpu["operator_cpu_s"], 2),
        "operator_peak_rss_mib": round(max(r[5] for r in rounds) / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
