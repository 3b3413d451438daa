"""API errors in OpenAI's shape, raised anywhere in request handling and turned into one response."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from llmops_serve.protocol import error_body


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param
        self.headers: dict[str, str] = {}

    def response(self) -> JSONResponse:
        body = error_body(self.message, self.type, self.code, self.param)
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """A 400 about one request field, its name first in the message."""
    return ApiError(400, f"{param}: {message}", code=code, param=param)
