"""Helpers for the e2e suite: the kubernetes client, a throwaway namespace, the operator in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from typing import Any

GROUP, VERSION = "llmops.dev", "v1alpha1"


def clients():
    from kubernetes import client, config

    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
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
        from llmops_operator.controller import run

        asyncio.run(run.operator(namespaces=[self.ns], standalone=True, stop_flag=self.stop))

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
        except AssertionError:  # a check that gives up at once (e.g. a process exited)
            raise
        except Exception as e:  # the API may 404 while objects appear
            last = e
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


# ---- helpers for the suite on a real control plane ---------------------------------------------------

EXIT_CODE = "llmops.dev/simulated-exit-code"  # kwok completes an annotated pod with this exit code
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def kubectl(*args: str, check: bool = True, input: str | None = None) -> str:
    """The kubectl built with the simulated cluster (same version as the API server), else PATH's."""
    import os
    import shutil
    import subprocess

    exe = os.environ.get("LLMOPS_E2E_KUBECTL")
    if not exe:
        from llmops.dev.simulated import Bins

        built = Bins.for_versions().kubectl
        exe = str(built) if built.exists() else shutil.which("kubectl") or "kubectl"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, input=input)
    if check and proc.returncode:
        raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def example(name: str, namespace: str) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load((REPO / "manifests" / "examples" / name).read_text())
    doc["metadata"]["namespace"] = namespace
    return doc


def pods(core, ns: str, selector: str) -> list[Any]:
    return [
        p
        for p in core.list_namespaced_pod(ns, label_selector=selector).items
        if not p.metadata.deletion_timestamp
    ]


def job_pods(core, ns: str, job: str) -> list[Any]:
    return pods(core, ns, f"training.kubeflow.org/job-name={job}")


def running(pod_list: list[Any]) -> bool:
    return bool(pod_list) and all(p.status.phase == "Running" for p in pod_list)


def exit_pod(core, ns: str, name: str, code: int) -> None:
    """The pod's containers 'exit' with ``code`` (kwok's llmops-simulated-exit stage)."""
    core.patch_namespaced_pod(name, ns, {"metadata": {"annotations": {EXIT_CODE: str(code)}}})


def missing(fn) -> bool:
    """Whether ``fn()`` answers 404."""
    try:
        fn()
    except Exception as e:
        if getattr(e, "status", None) == 404:
            return True
        raise
    return False


def ensure(fn) -> None:
    """Create something that may exist already."""
    try:
        fn()
    except Exception as e:
        if getattr(e, "status", None) != 409:
            raise


@contextlib.contextmanager
def scope(operator: bool = True):
    """A fresh namespace, with the operator in a thread watching it; deleted afterwards."""
    _api, custom, core, apps = clients()
    ns = namespace(core)
    try:
        if operator:
            with InThread(ns):
                yield ns, custom, core, apps
        else:
            yield ns, custom, core, apps
    finally:
        core.delete_namespace(ns)
