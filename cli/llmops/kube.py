"""The CLI's view of a cluster: the few API calls it makes, over the ``kubernetes`` client.

Raw paths rather than the generated or dynamic clients: the CLI knows its two kinds and the pods
below them, so it needs no discovery round trips, and one :class:`Cluster` is easy to replace by a
fake in tests. Errors stay the client's ``ApiException``; the CLI's error guard makes them one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELD_MANAGER = "llmops"
GROUP_VERSION = "llmops.dev/v1alpha1"
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short: str
    pod_label: str  # the label the operator puts on every pod of the resource

    @property
    def display(self) -> str:
        return f"{self.kind.lower()}.llmops.dev"


KINDS = {
    "TrainingJob": Kind("TrainingJob", "trainingjobs", "tj", "llmops.dev/trainingjob"),
    "InferenceEndpoint": Kind(
        "InferenceEndpoint", "inferenceendpoints", "ie", "llmops.dev/inferenceendpoint"
    ),
}
ALIASES = {
    alias: k
    for k in KINDS.values()
    for alias in (k.short, k.plural, k.kind.lower(), k.display, f"{k.plural}.llmops.dev")
}


def split_ref(ref: str) -> tuple[list[Kind], str]:
    """``tj/NAME``, ``trainingjob/NAME`` or a bare NAME (both kinds) → kinds to look in, name."""
    kind, sep, name = ref.partition("/")
    if not sep:
        return list(KINDS.values()), ref
    if kind.lower() not in ALIASES:
        from .errors import CliError

        raise CliError(f"{ref}: unknown kind {kind!r} (use tj/NAME or ie/NAME)")
    return [ALIASES[kind.lower()]], name


def path(kind: Kind, namespace: str | None, name: str | None = None) -> str:
    p = f"/apis/{GROUP_VERSION}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{kind.plural}"
    return p + (f"/{name}" if name else "")


class Cluster:
    """One kubeconfig context (or the in-cluster service account) and the calls the CLI needs."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                active = next(c for c in contexts if c["name"] == context)
            self.namespace = (active.get("context") or {}).get("namespace") or "default"
        except config.ConfigException:
            if kubeconfig or context or not SA_NAMESPACE.is_file():
                raise
            config.load_incluster_config(client_configuration=cfg)
            self.namespace = SA_NAMESPACE.read_text().strip()
        self.server = cfg.host
        self.api = client.ApiClient(cfg)

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout: float | None = 30,
        stream: bool = False,
    ) -> Any:
        resp = self.api.call_api(
            url,
            method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout,
        )
        if stream:
            return resp
        data = resp.data
        return json.loads(data) if data else None

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.request("GET", path(kind, namespace, name))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str | None) -> list[dict[str, Any]]:
        """Every ``kind`` in ``namespace`` (None: all namespaces), kind and apiVersion filled in."""
        items = self.request("GET", path(kind, namespace)).get("items") or []
        return [{"apiVersion": GROUP_VERSION, "kind": kind.kind, **item} for item in items]

    def apply(self, body: dict[str, Any], dry_run: bool = False, force: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager ``llmops``: we own exactly the fields we send."""
        kind, meta = KINDS[body["kind"]], body["metadata"]
        query = [("fieldManager", FIELD_MANAGER)]
        query += [("force", "true")] if force else []
        query += [("dryRun", "All")] if dry_run else []
        return self.request(
            "PATCH",
            path(kind, meta["namespace"], meta["name"]),
            body=body,
            query=query,
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """False when it was already gone; its children follow through their owner references."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.request("DELETE", path(kind, namespace, name))
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        url = f"/api/v1/namespaces/{namespace}/pods"
        return self.request("GET", url, query=[("labelSelector", selector)]).get("items") or []

    def log_lines(
        self, namespace: str, pod: str, container: str, follow: bool, tail: int | None
    ) -> Iterator[str]:
        query = [("container", container), ("follow", "true" if follow else "false")]
        query += [("tailLines", str(tail))] if tail is not None else []
        url = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        resp = self.request("GET", url, query=query, timeout=None if follow else 60, stream=True)
        try:
            pending = b""
            for chunk in resp.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            resp.release_conn()
