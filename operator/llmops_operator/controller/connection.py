"""Where the operator's connection comes from: the pod's service account, else the kubeconfig.

Read here rather than by the ``kubernetes`` client, whose package loads its ~700 model modules on
any import: about 40 MiB resident for the life of a process that talks to the API server only
through :mod:`kube` (``docs/benchmarks-operator.md``). What is read is what client-go reads for
these cases: in a pod, ``KUBERNETES_SERVICE_HOST``/``PORT``, the token file (read again on each load,
so rotated tokens are picked up) and the CA; from kubeconfig files (``KUBECONFIG``, a list, the first
value of each name wins; else ``~/.kube/config``), the current context's server, CA, TLS
verification switch, bearer token or token file, client certificate and key (files, relative to
their kubeconfig, or inline data) and exec credential plugins such as ``aws eks get-token``.
Anything else a user entry holds (``auth-provider``, basic auth) is refused by name.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import yaml

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
USER_FIELDS = {
    "token",
    "tokenFile",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
    "exec",
}


class CredentialsError(Exception):
    """Neither a service account nor a usable kubeconfig: the message names what is missing."""


@dataclasses.dataclass(frozen=True)
class Connection:
    server: str
    token: str | None = None
    ca_path: str | None = None
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False


def from_environment() -> Connection:
    """The in-cluster service account when there is one, else the current kubeconfig context."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port and (SA_DIR / "token").is_file():
        return in_cluster(host, port)
    return from_kubeconfig()


def in_cluster(host: str, port: str) -> Connection:
    host = f"[{host}]" if ":" in host else host  # an IPv6 service address
    token = (SA_DIR / "token").read_text().strip()
    return Connection(server=f"https://{host}:{port}", token=token or None, ca_path=str(SA_DIR / "ca.crt"))


def from_kubeconfig() -> Connection:
    files = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    files = files or [Path("~/.kube/config").expanduser()]
    current: str | None = None
    named: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {"clusters": {}, "contexts": {}, "users": {}}
    for file in files:
        if not file.is_file():
            continue
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CredentialsError(f"{file}: not a readable kubeconfig ({type(e).__name__})") from None
        current = current or doc.get("current-context")
        for section, entries in named.items():
            for item in doc.get(section) or []:
                entries.setdefault(item["name"], (item.get(section[:-1]) or {}, file.parent))
    if not any(named.values()):
        raise CredentialsError("Invalid kube-config file. No configuration found.")
    if not current or current not in named["contexts"]:
        raise CredentialsError(f"kubeconfig: current-context {current!r} is not defined")
    context, _ = named["contexts"][current]
    if context.get("cluster") not in named["clusters"] or context.get("user", "") not in named["users"]:
        raise CredentialsError(f"kubeconfig: context {current!r} names a cluster or user that is not defined")
    (cluster, cluster_dir), (user, user_dir) = (
        named["clusters"][context["cluster"]],
        named["users"][context["user"]],
    )
    if unsupported := sorted(set(user) - USER_FIELDS):
        raise CredentialsError(
            f"kubeconfig user {context['user']!r}: {', '.join(unsupported)} is not supported"
        )
    token, cert, key = user.get("token"), user.get("client-certificate-data"), user.get("client-key-data")
    if user.get("tokenFile"):
        token = (user_dir / user["tokenFile"]).read_text().strip()
    if user.get("exec"):
        status = exec_credential(user["exec"], user_dir)
        token = status.get("token") or token
        if status.get("clientCertificateData"):  # PEM, not base64, in an ExecCredential
            cert = base64.b64encode(status["clientCertificateData"].encode()).decode()
            key = base64.b64encode(status["clientKeyData"].encode()).decode()
    return Connection(
        server=cluster.get("server") or "",
        token=token,
        ca_path=_file(cluster, "certificate-authority", cluster_dir),
        cert_path=_data_file(cert) if cert else _file(user, "client-certificate", user_dir),
        key_path=_data_file(key) if key else _file(user, "client-key", user_dir),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def exec_credential(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """Run an exec credential plugin as client-go does; its ExecCredential's ``status``."""
    command = spec.get("command") or ""
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)
    info = {"apiVersion": spec.get("apiVersion"), "kind": "ExecCredential", "spec": {"interactive": False}}
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    try:
        out = subprocess.run(
            [command, *(spec.get("args") or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return json.loads(out.stdout)["status"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as e:
        raise CredentialsError(f"kubeconfig exec plugin {command!r} failed: {type(e).__name__}") from None


def ssl_context(conn: Connection) -> ssl.SSLContext | None:
    """The TLS settings of ``conn``; None for plain HTTP (tests, the emulator)."""
    if not conn.server.startswith("https"):
        return None
    ctx = ssl.create_default_context(cafile=conn.ca_path)
    if conn.cert_path:
        ctx.load_cert_chain(conn.cert_path, conn.key_path)
    if conn.insecure:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def open_url(conn: Connection, path: str, timeout: float) -> Any:
    """A plain GET of ``path`` with ``conn``'s credentials (urllib: for one-off requests made outside
    the operator's event loop, like the CLI's reachability check); raises urllib's errors."""
    request = urllib.request.Request(conn.server.rstrip("/") + path)
    if conn.token:
        request.add_header("Authorization", f"Bearer {conn.token}")
    return urllib.request.urlopen(request, timeout=timeout, context=ssl_context(conn))


def _file(entry: dict[str, Any], field: str, base: Path) -> str | None:
    if data := entry.get(field + "-data"):
        return _data_file(data)
    return str(base / entry[field]) if entry.get(field) else None


_private_dir: Path | None = None


def _data_file(b64: str) -> str:
    """Inline kubeconfig data as a file only we can read: Python's TLS loads certificates from files.
    Named by content, so loading the same credentials again writes nothing new."""
    global _private_dir
    if _private_dir is None:
        _private_dir = Path(tempfile.mkdtemp(prefix="llmops-operator-"))  # mode 0700
        atexit.register(shutil.rmtree, _private_dir, True)
    data = base64.b64decode(b64)
    path = _private_dir / hashlib.sha256(data).hexdigest()[:16]
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return str(path)
