"""A small in-memory Kubernetes API over HTTP for the CLI's cluster commands.

Just what the CLI calls: our two kinds (get, list, server-side apply, delete), pods by label and
their logs. Apply stores the body merged over the old object and bumps resourceVersion only when
something changed; ``dryRun=All`` stores nothing. Every request is recorded so tests can check the
wire format (content type, field manager, dry run) as well as the outcome.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

GROUP = "/apis/llmops.dev/v1alpha1"
KIND_OF = {"trainingjobs": "TrainingJob", "inferenceendpoints": "InferenceEndpoint"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


@dataclass
class FakeApi:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)  # (pod, container) -> text
    requests: list[Request] = field(default_factory=list)
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # other paths → the JSON they return

    def put(self, obj: dict[str, Any]) -> None:
        plural = {v: k for k, v in KIND_OF.items()}[obj["kind"]]
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", str(self.version))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects[(plural, meta["namespace"], meta["name"])] = obj

    def handle(self, method: str, url: str, content_type: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        self.requests.append(Request(method, parsed.path, query, content_type, body))
        parts = parsed.path.strip("/").split("/")
        if parsed.path in self.extra:
            return 200, self.extra[parsed.path]
        if parsed.path.startswith("/api/v1/namespaces/") and parts[4] == "pods":
            if len(parts) == 5:
                selector = dict(s.split("=") for s in query.get("labelSelector", [""])[0].split(",") if s)
                ns = parts[3]
                items = [p for p in self.pods if p["metadata"]["namespace"] == ns and
                         all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]  # fmt: skip
                return 200, {"kind": "PodList", "items": items}
            return 200, self.logs.get((parts[5], query["container"][0]), "")
        if not parsed.path.startswith(GROUP):
            return 404, {"kind": "Status", "message": "not found"}
        rest = parts[3:]
        ns = rest[1] if rest[0] == "namespaces" else None
        plural = rest[2] if ns else rest[0]
        name = rest[3] if ns and len(rest) > 3 else None
        key = (plural, ns or "", name or "")
        if method == "GET" and name is None:
            items = [
                o for (p, n, _), o in sorted(self.objects.items()) if p == plural and (ns is None or n == ns)
            ]
            return 200, {"kind": f"{KIND_OF[plural]}List", "items": [
                {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]}  # fmt: skip
        if method == "GET":
            return (200, self.objects[key]) if key in self.objects else (404, _not_found(plural, name))
        if method == "DELETE":
            return (200, self.objects.pop(key)) if key in self.objects else (404, _not_found(plural, name))
        if method == "PATCH":
            assert content_type == "application/apply-patch+yaml", content_type
            old = self.objects.get(key)
            new = copy.deepcopy(old) if old else {"metadata": {}}
            for k, v in body.items():
                if k == "metadata":
                    new["metadata"].update(v)
                else:
                    new[k] = v
            if old != new:
                self.version += 1
                new["metadata"]["resourceVersion"] = str(self.version)
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1 if old else 1
            new["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            if query.get("dryRun") != ["All"]:
                self.objects[key] = new
            return (200 if old else 201), new
        return 405, {"kind": "Status", "message": "method not allowed"}


def _not_found(plural: str, name: str | None) -> dict[str, Any]:
    return {"kind": "Status", "code": 404, "message": f'{plural}.llmops.dev "{name}" not found'}


class Server:
    """The fake on 127.0.0.1 with a kubeconfig pointing at it (context namespace: team-a)."""

    def __init__(self, api: FakeApi, tmp: Path) -> None:
        api_ = api

        class Handler(BaseHTTPRequestHandler):
            def _do(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = yaml.safe_load(raw) if raw else None
                status, out = api_.handle(self.command, self.path, self.headers.get("Content-Type", ""), body)
                data = out.encode() if isinstance(out, str) else json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(out, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = _do

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u", "namespace": "team-a"}},
                             {"name": "other", "context": {"cluster": "fake", "user": "u", "namespace": "team-b"}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
            })
        )  # fmt: skip

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
