"""Request bodies: read under a size limit, validate, and turn every failure into an OpenAI 4xx."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from llmops_serve.errors import ApiError

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request, limit: int) -> dict:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body exceeds {limit} bytes", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes", code="body_too_large")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    return data


def validate(model: type[M], data: dict) -> M:
    """The request as ``model``, or a 400 naming the first bad field (unsupported ones say so)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        kind = first["type"]
        if kind == "extra_forbidden":
            msg, code = "is not a supported parameter", "unsupported_parameter"
        elif kind == "unsupported":
            msg, code = first["msg"], "unsupported_parameter"
        else:
            msg, code = first["msg"].removeprefix("Value error, "), "invalid_value"
        message = msg if param is None or msg.startswith(param) else f"{param}: {msg}"
        raise ApiError(400, message, code=code, param=param) from None


async def parse(request: Request, model: type[M], limit: int, served: str) -> M:
    """Read and validate a body whose ``model`` must name the served model (404 otherwise)."""
    req = validate(model, await read_json(request, limit))
    name = getattr(req, "model", None)
    if name is not None and name != served:
        raise ApiError(404, f"model '{name}' does not exist", code="model_not_found", param="model")
    return req
