"""Helpers for the e2e suite: the kubernetes client, a throwaway namespace, the operator in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import kopf

GROUP, VERSION = "llmops.dev", "v1alpha1"


def clients():
    from kubernetes import client, config

    config.load_kube_config()
    return client.ApiClient(), client.CustomObjectsApi(), client.CoreV1Api(), client.AppsV1Api()


def namespace(core) -> str:
    name = f"llmops-e2e-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


class InThread:
    def __init__(self, namespace: str) -> None:
        self.ns, self.stop = namespace, threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        from llmops_operator.controller import REGISTRY

        asyncio.run(
            kopf.operator(registry=REGISTRY, namespaces=[self.ns], standalone=True, stop_flag=self.stop)
        )

    def __enter__(self) -> InThread:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(30)


def wait(check, timeout: float = 120, what: str = "condition"):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as e:  # the API may 404 while objects appear
            last = e
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})
