"""The real operator in its own thread and loop, against kmock's Kubernetes emulator in the test's loop.

Objects go in through the emulator's HTTP API; tests assert final state with a bounded poll.
``FaultyEmulator`` answers a fraction of the operator's writes with 500, 409 or a delay, and logs every
request so the RBAC test can check the ClusterRole against what the operator really called.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import kopf
from lean_emulator import LeanEmulator, declare, declare_pytorchjobs  # noqa: F401  (re-exported to tests)

from llmops_operator.controller import REGISTRY, kube

NS = "default"
GROUP_VERSION = "llmops.dev/v1alpha1"
TEST_AGENT = "llmops-tests"
SEEN: list[tuple[str, str, str]] = []  # every operator request of every emulator run in this session


class FaultyEmulator(LeanEmulator):
    """The emulator, with optional faults on the operator's requests and a log of (method, path, query)."""

    faults: float = 0.0
    delay: float = 0.0
    # 409 on patches too. A real API server never answers a merge patch without resourceVersion 409
    # (ours and kopf's), and kopf, met with one on its own patch, waits for the object's next event.
    patch_conflicts: bool = True
    log: list[tuple[str, str, str]]
    # the operator's requests to a path held until its event is set (a pass kept in flight)
    hold: dict[str, asyncio.Event]

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        agent = request.headers.get("User-Agent", "")
        method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
        path, query = request.url.path, request.url.query_string
        from_operator = TEST_AGENT not in agent
        if from_operator:
            self.log.append((method, path, query))
            if path in self.hold:
                await self.hold[path].wait()
        if from_operator and self.faults and method != "GET":
            r = random.random()
            if r < self.faults / 2:
                return aiohttp.web.json_response(
                    {"kind": "Status", "code": 500, "reason": "InternalError"}, status=500
                )
            if r < self.faults * 3 / 4 and (method == "POST" or self.patch_conflicts):
                return aiohttp.web.json_response(
                    {"kind": "Status", "code": 409, "reason": "Conflict"}, status=409
                )
            if r < self.faults * 3 / 4:
                return aiohttp.web.json_response(
                    {"kind": "Status", "code": 503, "reason": "ServiceUnavailable"}, status=503
                )
            if r < self.faults:
                await asyncio.sleep(self.delay or 0.3)
        return await super()._handle(request)


class Cluster:
    """The test's side of the emulator: a plain HTTP client marked so faults never hit it."""

    def __init__(self, emulator: FaultyEmulator, url: str) -> None:
        self.emulator, self.url = emulator, url.rstrip("/")
        self.session = aiohttp.ClientSession(headers={"User-Agent": TEST_AGENT})

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise kube.ApiError(r.status, str(data))
            return data

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("generation", 1)
        return await self.call("POST", path_of(obj, named=False), obj)

    async def get(self, api_version: str, plural: str, name: str, ns: str = NS) -> dict[str, Any] | None:
        try:
            return await self.call("GET", kube.path(api_version, plural, ns, name))
        except kube.ApiError as e:
            if e.status == 404:
                return None
            raise

    async def patch(
        self, api_version: str, plural: str, name: str, body: dict[str, Any], sub: str = ""
    ) -> Any:
        return await self.call("PATCH", kube.path(api_version, plural, NS, name, sub), body)

    async def delete(self, api_version: str, plural: str, name: str) -> Any:
        return await self.call("DELETE", kube.path(api_version, plural, NS, name))

    async def list(self, api_version: str, plural: str) -> list[dict[str, Any]]:
        return (await self.call("GET", kube.path(api_version, plural, NS))).get("items", [])

    async def close(self) -> None:
        await self.session.close()


def path_of(obj: dict[str, Any], named: bool = True) -> str:
    meta = obj["metadata"]
    plural = kube.plural(obj["kind"])
    return kube.path(obj["apiVersion"], plural, meta.get("namespace", NS), meta["name"] if named else None)


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy without raising; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            result = await check()
            if result:
                return result
            last = result
        except (AssertionError, KeyError, TypeError, IndexError) as e:
            last = e
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.1)


class Operator:
    """kopf.operator() with our registry in a thread of its own; start() and stop() may repeat."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.thread: threading.Thread | None = None
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()

    def _main(self) -> None:
        asyncio.run(
            kopf.operator(
                registry=REGISTRY,
                clusterwide=True,
                standalone=True,
                stop_flag=self.stop_flag,
                ready_flag=self.ready_flag,
            )
        )

    async def start(self) -> None:
        kube.configure(kube.Connection(server=self.url))
        self.stop_flag, self.ready_flag = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._main, name="operator", daemon=True)
        self.thread.start()
        for _ in range(300):
            if self.ready_flag.is_set():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the watches start right after "ready"

    async def stop(self) -> None:
        if self.thread is None:
            return
        self.stop_flag.set()
        for _ in range(200):
            if not self.thread.is_alive():
                break
            await asyncio.sleep(0.05)
        self.thread = None


@contextlib.asynccontextmanager
async def running(
    pytorchjobs: bool = True, faults: float = 0.0
) -> AsyncIterator[tuple[Cluster, Operator, FaultyEmulator]]:
    logging.getLogger("kopf").setLevel(logging.WARNING)
    emulator = FaultyEmulator()
    emulator.log, emulator.hold = [], {}
    declare(emulator, pytorchjobs)
    async with emulator, kmock.Server(emulator) as server:
        cluster = Cluster(emulator, str(server.url))
        emulator.faults = faults
        op = Operator(str(server.url))
        await op.start()
        try:
            yield cluster, op, emulator
        finally:
            emulator.faults = 0
            await op.stop()
            await cluster.close()
            SEEN.extend(emulator.log)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


TJ_API, IE_API = ("llmops.dev/v1alpha1", "trainingjobs"), ("llmops.dev/v1alpha1", "inferenceendpoints")
PTJ = ("kubeflow.org/v1", "pytorchjobs")


def training_job(name: str = "tiny", **spec: Any) -> dict[str, Any]:
    base = {
        "model": {"preset": "tiny"},
        "data": {"train": "/opt/llmops/data/corpus.txt"},
        "hyperparameters": {"maxSteps": 200, "batchSize": 8, "sequenceLength": 128},
        "resources": {"accelerator": "cpu", "acceleratorsPerNode": 1, "cpu": "2", "memory": "2Gi"},
        "checkpoint": {"volumeClaim": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
        "output": {"location": f"pvc://{name}-checkpoints/model"},
    }
    base.update(spec)
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": base,
    }


def endpoint(name: str = "chat", **spec: Any) -> dict[str, Any]:
    base = {
        "model": {"location": "pvc://models/tiny-chat"},
        "runtime": "llmops",
        "resources": {"accelerator": "cpu", "cpu": "2", "memory": "4Gi"},
        "replicas": {"min": 2, "max": 6},
    }
    base.update(spec)
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "InferenceEndpoint",
        "metadata": {"name": name},
        "spec": base,
    }


async def get_status(cluster: Cluster, api: tuple[str, str], name: str) -> dict[str, Any]:
    obj = await cluster.get(*api, name)
    return (obj or {}).get("status") or {}
