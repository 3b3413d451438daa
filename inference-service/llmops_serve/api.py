"""FastAPI routes: OpenAI-compatible completions/chat, health, readiness, metrics.

The app loads the model in a background thread so /health answers at once and /ready turns 200
when the engine runs. A pure-ASGI middleware (so streaming and disconnects pass through untouched)
does request ids, auth, load/drain gating, in-flight counting and requests-by-status metrics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops_serve import loader
from llmops_serve.engine import Engine, Event, QueueFullError, SamplingParams, Sequence
from llmops_serve.metrics import Metrics
from llmops_serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    error_body,
    model_card,
    new_id,
    now,
)
from llmops_serve.settings import Settings

log = logging.getLogger("llmops_serve.api")
KEEPALIVE_S = 10.0


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers: dict[str, str] = {}

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.type, self.code, self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class ResponseCache:
    """Exact-match LRU of whole responses to deterministic (greedy or seeded) non-streaming requests."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: collections.OrderedDict[str, dict] = collections.OrderedDict()

    def get(self, key: str) -> dict | None:
        if key in self._data:
            self._data.move_to_end(key)
            return copy.deepcopy(self._data[key])
        return None

    def put(self, key: str, value: dict) -> None:
        if self.size <= 0:
            return
        self._data[key] = copy.deepcopy(value)
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)


class State:
    """Everything the routes share; `engine` is None until the model is loaded."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.cache = ResponseCache(settings.cache_size)
        self.keys = settings.keys()
        self.engine: Engine | None = None
        self.tokenizer: Any = None
        self.max_model_len = settings.max_model_len or 2048
        self.load_error: str | None = None
        self.draining = False
        self.inflight = 0
        self.created = now()

    def load(self, on_failure: Callable[[], None] | None = None) -> None:
        s = self.settings
        try:
            model, tokenizer = loader.load(s.model, dtype=s.dtype, quantize=s.quantize, cache_dir=s.cache_dir)
        except Exception as exc:
            log.exception("model load failed")
            self.load_error = str(exc)
            if on_failure:
                on_failure()
            return
        positions = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_model_len = min(s.max_model_len or positions, positions)
        self.tokenizer = tokenizer
        engine = Engine(
            model,
            tokenizer,
            max_batch_size=s.max_batch_size,
            max_queue=s.max_queue,
            max_tokens_in_flight=s.max_tokens_in_flight,
            metrics=self.metrics,
            model_name=s.name,
        )
        engine.start()
        self.engine = engine

    def check_key(self, header: str | None) -> bool:
        if not self.keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        ok = False
        for key in self.keys:  # compare against every key: timing does not reveal which matched
            ok |= hmac.compare_digest(token.strip().encode(), key.encode())
        return ok and scheme.lower() == "bearer"


class GateMiddleware:
    """Request id, auth, 503 while loading/draining, in-flight count, requests-by-status metric."""

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

        error = self._gate(path, headers)
        api = path.startswith("/v1/")
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
            if path not in ("/metrics", "/health", "/ready"):
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

    def _gate(self, path: str, headers: dict[str, str]) -> ApiError | None:
        if not path.startswith("/v1/"):
            return None
        if not self.state.check_key(headers.get("authorization")):
            return ApiError(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
        if self.state.draining or self.state.engine is None:
            why = "server is shutting down" if self.state.draining else "model is loading"
            err = ApiError(503, why, "service_unavailable", "unavailable")
            err.headers["Retry-After"] = "1" if self.state.draining else "5"
            return err
        return None


def create_app(settings: Settings, *, load_in_background: bool = True) -> FastAPI:
    state = State(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            threading.Thread(
                target=state.load, args=(getattr(app.state, "on_load_failure", None),), daemon=True
            ).start()
        else:
            state.load()
        yield
        if state.engine is not None:
            state.engine.shutdown()

    app = FastAPI(title="llmops-serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.llmops = state
    app.add_middleware(GateMiddleware, state=state)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind, exc.status_code), status_code=exc.status_code)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if state.engine is None or state.draining:
            why = (
                "draining"
                if state.draining
                else (f"load failed: {state.load_error}" if state.load_error else "loading")
            )
            return JSONResponse({"status": why}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card(settings.name, settings.model, state.created)]}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        req = await _parse(request, CompletionRequest, settings.max_body_bytes)
        prompts = _completion_prompts(state, req)
        return await _generate(state, request, req, prompts, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        req = await _parse(request, ChatCompletionRequest, settings.max_body_bytes)
        if req.max_completion_tokens is not None and req.max_tokens is None:
            req.max_tokens = req.max_completion_tokens
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        text = state.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = state.tokenizer(text, add_special_tokens=False)["input_ids"]
        return await _generate(state, request, req, [ids], chat=True)

    return app


async def _parse(request: Request, model: type, limit: int) -> Any:
    """Read the body under a size limit and validate it, turning every failure into an OpenAI 4xx."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body exceeds {limit} bytes", "invalid_request_error", "body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(
                413, f"request body exceeds {limit} bytes", "invalid_request_error", "body_too_large"
            )
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "invalid_request_error", "invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_request_error", "invalid_json")
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(
            400, f"{param}: {first['msg']}", "invalid_request_error", "invalid_value", param
        ) from None
    state: State = request.app.state.llmops
    if req.model != state.settings.name:
        raise ApiError(
            404, f"model '{req.model}' does not exist", "invalid_request_error", "model_not_found", "model"
        )
    return req


def _completion_prompts(state: State, req: CompletionRequest) -> list[list[int]]:
    p = req.prompt
    if isinstance(p, str):
        return [state.tokenizer(p)["input_ids"]]
    if all(isinstance(x, int) for x in p):
        vocab = len(state.tokenizer)
        if any(not 0 <= x < vocab for x in p):
            raise ApiError(
                400, "prompt token id out of range", "invalid_request_error", "invalid_value", "prompt"
            )
        return [list(p)]
    return [state.tokenizer(x)["input_ids"] for x in p]


def _budget(state: State, req: Any, prompts: list[list[int]]) -> int:
    """Check prompt length and max_tokens against the limits; return the max_tokens to use."""
    s = state.settings
    longest = max(len(p) for p in prompts)
    if min(len(p) for p in prompts) == 0:
        raise ApiError(400, "prompt is empty", "invalid_request_error", "invalid_value", "prompt")
    if s.max_prompt_tokens and longest > s.max_prompt_tokens:
        msg = f"prompt has {longest} tokens, more than the limit of {s.max_prompt_tokens}"
        raise ApiError(400, msg, "invalid_request_error", "context_length_exceeded", "prompt")
    room = state.max_model_len - longest
    if room < 1:
        msg = f"prompt has {longest} tokens; this model's maximum context length is {state.max_model_len}"
        raise ApiError(400, msg, "invalid_request_error", "context_length_exceeded", "prompt")
    if req.max_tokens is None:
        return min(room, s.max_tokens_cap or room)
    if s.max_tokens_cap and req.max_tokens > s.max_tokens_cap:
        msg = f"max_tokens {req.max_tokens} exceeds the server's cap of {s.max_tokens_cap}"
        raise ApiError(400, msg, "invalid_request_error", "invalid_value", "max_tokens")
    if req.max_tokens > room:
        msg = (
            f"prompt ({longest} tokens) + max_tokens ({req.max_tokens}) exceeds this model's "
            f"maximum context length of {state.max_model_len}"
        )
        raise ApiError(400, msg, "invalid_request_error", "context_length_exceeded", "max_tokens")
    return req.max_tokens


async def _generate(
    state: State, request: Request, req: Any, prompts: list[list[int]], chat: bool
) -> Response:
    max_tokens = _budget(state, req, prompts)
    kind = "chat" if chat else "completions"
    key = None
    if req.deterministic and not req.stream and state.cache.size > 0:
        key = kind + json.dumps(req.model_dump(exclude={"stream", "stream_options"}), sort_keys=True)
        hit = state.cache.get(key)
        if hit is not None:
            state.metrics.cache_hits.inc()
            hit["id"], hit["created"] = new_id("chatcmpl" if chat else "cmpl"), now()
            return JSONResponse(hit)
        state.metrics.cache_misses.inc()

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    rid = request.scope["state"]["request_id"]
    seqs = []
    for i, ids in enumerate(prompts):
        for j in range(req.n):
            params = SamplingParams(
                max_tokens=max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                seed=None if req.seed is None else req.seed + j,
                stop=req.stop_list(),
                ignore_eos=req.ignore_eos,
            )
            seqs.append(Sequence(ids, params, loop, queue, index=i * req.n + j, request_id=rid))
    try:
        state.engine.submit(seqs)
    except QueueFullError:
        err = ApiError(429, "server queue is full, retry later", "rate_limit_exceeded", "queue_full")
        err.headers["Retry-After"] = "1"
        raise err from None
    deadline = loop.time() + state.settings.request_timeout
    rid_obj = new_id("chatcmpl" if chat else "cmpl")
    prompt_tokens = sum(len(p) for p in prompts)
    if req.stream:
        gen = _stream(state, req, seqs, queue, deadline, rid_obj, prompt_tokens, chat)
        return StreamingResponse(gen, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    try:
        texts, reasons, completion = await _collect(request, seqs, queue, deadline)
    finally:
        _cancel(state, seqs)
    choices = []
    for k in range(len(seqs)):
        if chat:
            msg = {"role": "assistant", "content": texts[k]}
            choices.append({"index": k, "message": msg, "finish_reason": reasons[k], "logprobs": None})
        else:
            choices.append({"index": k, "text": texts[k], "finish_reason": reasons[k], "logprobs": None})
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
    body = {
        "id": rid_obj,
        "object": "chat.completion" if chat else "text_completion",
        "created": now(),
        "model": state.settings.name,
        "choices": choices,
        "usage": usage,
    }
    if key is not None:
        state.cache.put(key, body)
    return JSONResponse(body)


def _cancel(state: State, seqs: list[Sequence]) -> None:
    """Free the rows of a request that is over (finished, failed, timed out or abandoned)."""
    for s in seqs:
        if not s.finished:
            s.cancel()
    state.engine.wake()


async def _collect(
    request: Request, seqs: list[Sequence], queue: asyncio.Queue[Event], deadline: float
) -> tuple[list[str], list[str], int]:
    loop = asyncio.get_running_loop()
    texts, reasons = [""] * len(seqs), [""] * len(seqs)
    done, completion = 0, 0
    while done < len(seqs):
        left = deadline - loop.time()
        if left <= 0:
            raise ApiError(504, "request timed out", "timeout", "timeout")
        try:
            ev = (
                queue.get_nowait()
                if not queue.empty()
                else await asyncio.wait_for(queue.get(), min(left, 0.5))
            )
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                raise ApiError(499, "client disconnected", "cancelled") from None
            continue
        texts[ev.index] += ev.text
        if ev.finish_reason is not None:
            if ev.error:
                raise ApiError(500, ev.error, "internal_error", "engine_error")
            reasons[ev.index], done, completion = (
                ev.finish_reason,
                done + 1,
                completion + ev.completion_tokens,
            )
    return texts, reasons, completion


async def _stream(
    state: State,
    req: Any,
    seqs: list[Sequence],
    queue: asyncio.Queue[Event],
    deadline: float,
    rid: str,
    prompt_tokens: int,
    chat: bool,
) -> AsyncIterator[str]:
    """SSE frames `data: {json}\\n\\n`, `: keep-alive` comments while waiting, `data: [DONE]` last."""
    loop = asyncio.get_running_loop()
    created, name = now(), state.settings.name
    obj = "chat.completion.chunk" if chat else "text_completion"
    usage_on = req.include_usage()

    def frame(choices: list[dict], usage: dict | None = None) -> str:
        body = {"id": rid, "object": obj, "created": created, "model": name, "choices": choices}
        if usage_on:
            body["usage"] = usage
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def choice(index: int, text: str | None, reason: str | None, role: bool = False) -> dict:
        if not chat:
            return {"index": index, "text": text or "", "logprobs": None, "finish_reason": reason}
        delta: dict[str, str] = {"role": "assistant"} if role else {}
        if text:
            delta["content"] = text
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}

    try:
        if chat:
            for k in range(len(seqs)):
                yield frame([choice(k, "", None, role=True)])
        done, completion = 0, 0
        held: Event | None = None
        while done < len(seqs):
            left = deadline - loop.time()
            if left <= 0:
                yield f"data: {json.dumps(error_body('request timed out', 'timeout', 'timeout'))}\n\n"
                yield "data: [DONE]\n\n"
                return
            if held is not None:
                ev, held = held, None
            elif not queue.empty():  # fast path: no timer task when the engine is ahead of us
                ev = queue.get_nowait()
            else:
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=min(left, KEEPALIVE_S))
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
            if ev.error:
                yield f"data: {json.dumps(error_body(ev.error, 'internal_error', 'engine_error'))}\n\n"
                yield "data: [DONE]\n\n"
                return
            while ev.finish_reason is None and not queue.empty():  # we fell behind: one frame, not many
                nxt = queue.get_nowait()
                if nxt.index != ev.index or nxt.error:
                    held = nxt
                    break
                ev = Event(ev.text + nxt.text, ev.index, nxt.finish_reason, nxt.completion_tokens)
            if ev.finish_reason is not None:
                done, completion = done + 1, completion + ev.completion_tokens
            if ev.text or ev.finish_reason is not None:
                yield frame([choice(ev.index, ev.text, ev.finish_reason)])
        if usage_on:
            total = prompt_tokens + completion
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": total}
            yield frame([], usage)
        yield "data: [DONE]\n\n"
    finally:
        _cancel(state, seqs)  # a client that disconnects frees its rows at the next engine step
