"""The operator's own Kubernetes client: a small async JSON client over aiohttp.

Every call goes through :func:`request`, which records ``(verb, group, resource, subresource)``
in :data:`CALLS` so the RBAC test can check that the ClusterRole covers each of them. Connection
details come from :func:`configure` (tests) or :mod:`connection` (in-cluster service account or the
current kubeconfig); kopf logs in with the same details (see ``handlers.login``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from .connection import Connection, from_environment, ssl_context

logger = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"  # server-side apply; JSON is valid YAML
FIELD_MANAGER = "llmops-operator"
CALLS: set[tuple[str, str, str, str]] = set()  # (verb, group, resource, subresource)


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


_connection: Connection | None = None
_sessions: dict[tuple[int, bool], aiohttp.ClientSession] = {}  # (event loop, for watches)
MAX_REQUESTS = 50  # API requests in flight at once


_configured_explicitly = False


def configure(connection: Connection, explicit: bool = True) -> None:
    """Use ``connection`` from now on (tests and benchmarks pass one; else the environment's)."""
    global _connection, _configured_explicitly
    _connection, _configured_explicitly = connection, explicit
    _sessions.clear()


def refresh() -> Connection:
    """Credentials loaded again from the environment, unless a test or benchmark configured them."""
    if not _configured_explicitly:
        configure(from_environment(), explicit=False)
    return connection()


def connection() -> Connection:
    if _connection is None:
        configure(from_environment(), explicit=False)
    assert _connection is not None
    return _connection


def path(api_version: str, plural: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    p = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return p + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")


def plural(kind: str) -> str:
    lower = kind.lower()
    return {"networkpolicy": "networkpolicies"}.get(lower, lower + ("es" if lower.endswith("s") else "s"))


def _session(watch: bool = False) -> aiohttp.ClientSession:
    """This event loop's session for requests (at most ``MAX_REQUESTS`` at once) or for watches.

    Watches get a pool of their own, without a limit: each holds its connection for minutes, one per
    child kind and namespace, and in a shared pool of 50 eight namespaces' watches would hold every
    connection and leave none for requests.
    """
    key = (id(asyncio.get_running_loop()), watch)
    session = _sessions.get(key)
    if session is None or session.closed:
        conn = connection()
        ctx = ssl_context(conn) or False
        # The API server's audit log and default field manager name the client by its User-Agent.
        headers = {"User-Agent": FIELD_MANAGER}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        session = aiohttp.ClientSession(
            base_url=conn.server.rstrip("/") + "/",
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ctx, limit=0 if watch else MAX_REQUESTS),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        )
        _sessions[key] = session
    return session


async def close() -> None:
    loop_id = id(asyncio.get_running_loop())
    for watch in (False, True):
        session = _sessions.pop((loop_id, watch), None)
        if session is not None:
            await session.close()


def _record(method: str, url: str, params: dict[str, str] | None) -> None:
    parts = url.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if not rest:  # discovery: a non-resource URL every authenticated user may read
        return
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), (rest[2] if len(rest) > 2 else "")
    verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(method)
    if verb is None:
        verb = "watch" if (params or {}).get("watch") else ("get" if name else "list")
    CALLS.add((verb, group, resource, sub))


async def request(
    method: str,
    url: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    content_type: str = MERGE,
) -> Any:
    """One API call; raises :class:`ApiError` on any status >= 400.

    On 401 the credentials are loaded again once (rotated service-account tokens, expiring exec
    tokens), as kopf does for its own connection by calling the login handler again.
    """
    try:
        return await _request(method, url, body, params, content_type)
    except ApiError as e:
        if e.status != 401 or _connection is None or _configured_explicitly:
            raise
    refresh()
    return await _request(method, url, body, params, content_type)


async def _request(method: str, url: str, body: Any, params: dict[str, str] | None, content_type: str) -> Any:
    _record(method, url, params)
    data = None if body is None else orjson.dumps(body)
    headers = {"Content-Type": content_type if method == "PATCH" else "application/json"} if data else {}
    async with _session().request(method, url.lstrip("/"), data=data, params=params, headers=headers) as resp:
        logger.debug("%s %s -> %s", method, url, resp.status)
        data = _decode(await resp.read())
        if resp.status >= 400:
            data = data if isinstance(data, dict) else {}
            raise ApiError(resp.status, data.get("reason", resp.reason or ""), data.get("message", ""))
        return data


def _decode(raw: bytes) -> Any:
    """A response body's JSON, or None (empty, or not JSON). orjson, not ``json``: decoding what the
    API server sends was a tenth of the operator's CPU, and orjson takes a quarter of the time."""
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


async def get(url: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        return await request("GET", url)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


async def create(url: str, body: dict[str, Any]) -> dict[str, Any]:
    return await request("POST", url, body, {"fieldManager": FIELD_MANAGER})


async def patch(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch: for the few fields we change in place (status, ``runPolicy.suspend``), as
    ``llmops-operator`` in ``managedFields`` (without it the API server names the client library)."""
    return await request("PATCH", url, body, {"fieldManager": FIELD_MANAGER})


async def apply(url: str, body: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any]:
    """Server-side apply as ``llmops-operator``: we own exactly the fields we render; fields other
    controllers or webhooks set (Kueue's tolerations, injected sidecars) stay theirs and stay put."""
    params = {"fieldManager": manager, "force": "true"}
    return await request("PATCH", url, body, params, content_type=APPLY)


async def delete(url: str) -> None:
    """Delete; already gone is fine."""
    try:
        await request("DELETE", url)
    except ApiError as e:
        if e.status != 404:
            raise


async def list_(url: str, label_selector: str | None = None) -> list[dict[str, Any]]:
    return (await list_page(url, label_selector))[0]


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    return {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}


async def list_page(
    url: str, label_selector: str | None = None, field_selector: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """The items and the list's resourceVersion (where a watch resumes)."""
    params = _selectors(label_selector, field_selector) or None
    doc = await request("GET", url, params=params) or {}
    return doc.get("items", []), (doc.get("metadata") or {}).get("resourceVersion", "")


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


async def watch(
    url: str,
    resource_version: str,
    label_selector: str | None,
    timeout: int,
    field_selector: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Watch events after ``resource_version``, filtered by the API server, with bookmarks."""
    params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout)}
    if resource_version:
        params["resourceVersion"] = resource_version
    params |= _selectors(label_selector, field_selector)
    _record("GET", url, params)
    read = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout + 30)
    async with _session(watch=True).get(url.lstrip("/"), params=params, timeout=read) as resp:
        if resp.status == 410:
            raise Gone()
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", await resp.text())
        async for line in resp.content:
            if not line.strip():
                continue
            event = orjson.loads(line)
            if event.get("type") == "ERROR":
                if (event.get("object") or {}).get("code") == 410:
                    raise Gone()
                raise ApiError(int((event.get("object") or {}).get("code") or 500), "WatchError", str(event))
            yield event


async def served(api_version: str, plural_name: str) -> bool:
    """Whether discovery lists ``plural_name`` in ``api_version`` (e.g. the PyTorchJob CRD is installed)."""
    try:
        doc = await request("GET", f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}")
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    return any(r.get("name") == plural_name for r in (doc or {}).get("resources", []))
