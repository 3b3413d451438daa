"""kmock's Kubernetes emulator with its two linear scans made constant-time, for tests and the benchmark.

kmock 0.8 keeps every request it has served and, to route each new one, checks ``request in view`` for
each fallback reaction, which iterates that whole history; it also finds an object by scanning every
stored object. So the n-th request costs O(n) and a run of R requests O(R^2): 1,100 POSTs took 250 s,
and any client that makes more requests is penalised quadratically, which skewed the operator benchmark.
``LeanEmulator`` routes each request by testing only that request against each reaction (an identity
test over the history can find nothing else) and looks named objects up by key. Same answers, linear
cost.

It also does two things a real API server does and kmock does not: every write gets a new
``resourceVersion`` (without it kopf cannot tell its own patch's echo from the stale events before it,
and re-runs a handler it has just finished), and ``generateName`` works (kopf names Events with it).
"""

from __future__ import annotations

import itertools
import uuid
from contextvars import ContextVar
from typing import Any

import aiohttp.web
import kmock

VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]
OURS = {"trainingjobs": "TrainingJob", "inferenceendpoints": "InferenceEndpoint"}


_current: ContextVar[Any] = ContextVar("current_request", default=None)


class _History(list):  # type: ignore[type-arg]
    """kmock's request history; iterated while routing a request (``request in view``), it yields only
    that request, which is all an identity test can find. Tests may still read the whole list."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        current = _current.get()
        return iter((current,)) if current is not None else super().__iter__()


class LeanEmulator(kmock.KubernetesEmulator):
    _versions = itertools.count(1000)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if request.action in (kmock.action.CREATE, kmock.action.UPDATE) and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            # a new resourceVersion per write, as a real API server assigns; kopf relies on it to skip
            # the stale events that arrive between its own patch and that patch's echo
            meta["resourceVersion"] = str(next(self._versions))
            if request.action == kmock.action.CREATE and meta.get("generateName") and not meta.get("name"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]  # kopf's Events use it
        if not isinstance(self._requests, _History):
            self._requests = _History(self._requests)
        _current.set(request)  # this request's own task: routing sees only it
        return await super()._handle(request)

    # kmock's name-mangled private lookup: by key when the request names one object
    def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:
        if request.name is not None and (strict or request.namespace is not None):
            obj = self._objects._objects.get((request.resource, request.namespace, request.name))
            return [] if obj is None else [obj]
        return [
            obj
            for (resource, namespace, name), obj in self._objects.items()
            if resource == request.resource
            and (namespace == request.namespace if strict else request.namespace in (None, namespace))
            and request.name in (None, name)
        ]


def declare(emulator: kmock.KubernetesEmulator, pytorchjobs: bool = True) -> None:
    """The built-in resources, ours, and (unless told otherwise) Kubeflow's PyTorchJob."""
    emulator.resources.load_bundled()
    for plural, kind in OURS.items():
        emulator.resources[f"llmops.dev/v1alpha1/{plural}"] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=VERBS, subresources={"status"}
        )
    if pytorchjobs:
        declare_pytorchjobs(emulator)


def declare_pytorchjobs(emulator: kmock.KubernetesEmulator) -> None:
    emulator.resources["kubeflow.org/v1/pytorchjobs"] = kmock.ResourceInfo(
        kind="PyTorchJob", namespaced=True, verbs=VERBS, subresources={"status"}
    )
