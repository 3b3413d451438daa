"""A pure-ASGI middleware (so streaming and disconnects pass through untouched) in front of the API.

It gives every request an id, checks the API key, answers 503 while the model loads or the server
drains, counts requests in flight (the drain waits for them) and counts responses by status.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from llmops_serve.errors import ApiError
from llmops_serve.state import State

log = logging.getLogger("llmops_serve.api")
API_PATHS = ("/v1/", "/tokenize", "/detokenize")  # need a key and a loaded model
QUIET_PATHS = ("/metrics", "/health", "/ready")  # probes and scrapes: not counted or logged


class GateMiddleware:
    def __init__(self, app: Any, state: State) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        rid = headers.get("x-request-id") or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        path = scope["path"]
        started = time.monotonic()
        status = {"code": 500}

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        api = path.startswith(API_PATHS)
        error = self._gate(headers) if api else None
        if api:
            self.state.inflight += 1
        try:
            if error is not None:
                await error.response()(scope, receive, send_wrapped)
            else:
                await self.app(scope, receive, send_wrapped)
        finally:
            if api:
                self.state.inflight -= 1
            if path not in QUIET_PATHS:
                self.state.metrics.requests.labels(str(status["code"])).inc()
                log.info(
                    "%s %s %s %.3fs request_id=%s",
                    scope["method"],
                    path,
                    status["code"],
                    time.monotonic() - started,
                    rid,
                    extra={"request_id": rid, "status": status["code"]},
                )

    def _gate(self, headers: dict[str, str]) -> ApiError | None:
        if not self.state.check_key(headers.get("authorization")):
            return ApiError(401, "invalid or missing API key", code="invalid_api_key")
        if self.state.draining or self.state.engine is None:
            why = "server is shutting down" if self.state.draining else "model is loading"
            err = ApiError(503, why, "service_unavailable", "unavailable")
            err.headers["Retry-After"] = "1" if self.state.draining else "5"
            return err
        return None
