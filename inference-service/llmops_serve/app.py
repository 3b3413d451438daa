"""The FastAPI app: OpenAI-compatible completions and chat, vLLM's extra routes, health, metrics.

The model loads in a background thread so /health answers at once and /ready turns 200 when the
engine runs. The routes only parse, check and hand over: generation lives in `generation`, whole
responses in `responses`, streams in `streaming`, admission in `gate`.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator
from importlib import metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmops_serve import generation, prompts, responses, streaming
from llmops_serve.errors import ApiError
from llmops_serve.gate import GateMiddleware
from llmops_serve.parsing import parse
from llmops_serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    VersionResponse,
    error_body,
    new_id,
    now,
)
from llmops_serve.settings import Settings
from llmops_serve.state import State


def version() -> str:
    try:
        return metadata.version("llmops")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _state(request: Request) -> State:
    return request.app.state.llmops


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(error_body(str(exc.detail), kind, exc.status_code), status_code=exc.status_code)


async def health() -> dict:
    return {"status": "ok"}


async def ready(request: Request) -> JSONResponse:
    state = _state(request)
    if state.engine is None or state.draining:
        why = "draining" if state.draining else "loading"
        if state.load_error and not state.draining:
            why = f"load failed: {state.load_error}"
        return JSONResponse({"status": why}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def get_version() -> VersionResponse:
    return VersionResponse(version=version())


def _card(state: State) -> ModelCard:
    s = state.settings
    return ModelCard(id=s.name, created=state.created, root=s.model, max_model_len=state.max_model_len)


async def models(request: Request) -> ModelList:
    return ModelList(data=[_card(_state(request))])


async def model(request: Request, model_id: str) -> ModelCard:
    state = _state(request)
    if model_id != state.settings.name:
        raise ApiError(404, f"model '{model_id}' does not exist", code="model_not_found", param="model")
    return _card(state)


async def _parse(request: Request, kind: type) -> Any:
    s = _state(request).settings
    return await parse(request, kind, s.max_body_bytes, s.name)


async def tokenize(request: Request) -> TokenizeResponse:
    state = _state(request)
    req = await _parse(request, TokenizeRequest)
    tok = state.tokenizer
    if req.messages is not None:
        text = prompts.chat_text(state, req.messages, req.add_generation_prompt)
        ids = tok(text, add_special_tokens=bool(req.add_special_tokens))["input_ids"]
    else:
        special = True if req.add_special_tokens is None else req.add_special_tokens
        ids = tok(req.prompt, add_special_tokens=special)["input_ids"]
    strs = tok.convert_ids_to_tokens(ids) if req.return_token_strs else None
    return TokenizeResponse(count=len(ids), max_model_len=state.max_model_len, tokens=ids, token_strs=strs)


async def detokenize(request: Request) -> DetokenizeResponse:
    state = _state(request)
    req = await _parse(request, DetokenizeRequest)
    prompts.check_token_ids(state, req.tokens, "tokens")
    return DetokenizeResponse(prompt=state.tokenizer.decode(req.tokens))


async def completions(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, CompletionRequest)
    ids, texts = prompts.completion_prompts(state, req)
    return await _generate(state, request, req, ids, texts)


async def chat(request: Request) -> Response:
    state = _state(request)
    req = await _parse(request, ChatCompletionRequest)
    if req.max_completion_tokens is not None and req.max_tokens is None:
        req.max_tokens = req.max_completion_tokens
    return await _generate(state, request, req, [prompts.chat_prompt(state, req.messages)], None)


ROUTES = [
    ("GET", "/health", health),
    ("GET", "/ready", ready),
    ("GET", "/metrics", metrics),
    ("GET", "/version", get_version),
    ("GET", "/v1/models", models),
    ("GET", "/v1/models/{model_id:path}", model),
    ("POST", "/tokenize", tokenize),
    ("POST", "/detokenize", detokenize),
    ("POST", "/v1/completions", completions),
    ("POST", "/v1/chat/completions", chat),
]


def create_app(settings: Settings, *, load_in_background: bool = True) -> FastAPI:
    state = State(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_in_background:
            on_failure = getattr(app.state, "on_load_failure", None)
            threading.Thread(target=state.load, args=(on_failure,), daemon=True).start()
        else:
            state.load()
        yield
        if state.engine is not None:
            state.engine.shutdown()

    app = FastAPI(title="llmops-serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.llmops = state
    app.add_middleware(GateMiddleware, state=state)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for method, path, handler in ROUTES:
        app.add_api_route(path, handler, methods=[method])
    return app


async def _generate(
    state: State,
    request: Request,
    req: CompletionRequest | ChatCompletionRequest,
    ids: list[list[int]],
    texts: list[str | None] | None,
) -> Response:
    max_tokens = prompts.max_tokens(state, req, ids)
    prompts.check_logit_bias(state, req.bias())
    chat = isinstance(req, ChatCompletionRequest)
    key = None
    if req.deterministic and not req.stream and state.cache.size > 0:
        key = ("chat" if chat else "completions") + json.dumps(req.model_dump(), sort_keys=True)
        hit = state.cache.get(key)
        if hit is not None:
            state.metrics.cache_hits.inc()
            hit["id"], hit["created"] = new_id("chatcmpl" if chat else "cmpl"), now()
            return JSONResponse(hit)
        state.metrics.cache_misses.inc()
    job = generation.start(state, request, req, ids, max_tokens, texts)
    if req.stream:
        return StreamingResponse(
            streaming.stream(job), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    choices = await generation.collect(job, request)
    body = (responses.chat if chat else responses.completion)(job, choices).model_dump(mode="json")
    if key is not None:
        state.cache.put(key, body)
    return JSONResponse(body)
