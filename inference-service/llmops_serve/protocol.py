"""OpenAI-compatible wire format: request and response models (no serving logic), as vLLM keeps them.

Requests are strict: a field this server implements is validated (a bad value is a 400 naming it), a
known OpenAI field it does not implement is refused with a 400 saying so unless its value is the
no-op default (``response_format: {"type": "text"}``, ``tools: []``...), and an unknown field is a
400 too. Nothing is accepted and then ignored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_LOGPROBS = 20  # OpenAI's limit for top_logprobs; completions' logprobs share it, as in vLLM
MAX_STOPS = 4


def _omit_none(value: object) -> bool:
    return value is None


def _Extension(default: Any = None) -> Any:
    """A vLLM extension field: present in the JSON only when the request asked for it."""
    return Field(default, exclude_if=_omit_none)


# Known OpenAI fields this server does not implement, with the values that mean "off".
_REFUSED: dict[str, Callable[[Any], bool]] = {
    "suffix": lambda v: v in (None, ""),
    "response_format": lambda v: v is None or (isinstance(v, dict) and v.get("type") == "text"),
    "tools": lambda v: not v,
    "tool_choice": lambda v: v in (None, "none", "auto"),
    "functions": lambda v: not v,
    "function_call": lambda v: v in (None, "none", "auto"),
    "audio": lambda v: v is None,
    "modalities": lambda v: v in (None, ["text"]),
    "prediction": lambda v: v is None,
    "reasoning_effort": lambda v: v is None,
    "web_search_options": lambda v: v is None,
    "store": lambda v: v in (None, False),
    "metadata": lambda v: not v,
    "service_tier": lambda v: v in (None, "auto", "default"),
    "verbosity": lambda v: v is None,
}


def _refuse(value: Any, info: ValidationInfo) -> Any:
    if not _REFUSED[info.field_name](value):
        raise PydanticCustomError(
            "unsupported", "{field} is not supported by this server", {"field": info.field_name}
        )
    return value


def _refusing(*fields: str) -> Any:
    """A before-validator that lets ``fields`` through only with their "off" values."""
    return field_validator(*fields, mode="before")(classmethod(lambda cls, v, info: _refuse(v, info)))


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: StrictBool = False
    continuous_usage_stats: StrictBool = False


class _Sampling(BaseModel):
    """What completions and chat share: sampling, stopping, streaming and the vLLM extensions."""

    model_config = ConfigDict(extra="forbid")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None  # an end-user id for the caller's records, as in OpenAI; no effect on output
    ignore_eos: StrictBool = False
    return_token_ids: StrictBool = False
    # Refused unless "off" (see _REFUSED).
    response_format: Any = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: StrictBool | None = None  # meaningful only with tools, which are refused
    functions: Any = None
    function_call: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    store: Any = None
    metadata: Any = None
    service_tier: Any = None
    verbosity: Any = None

    check_refused = _refusing(*(f for f in _REFUSED if f != "suffix"))

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (v or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"key {key!r} is not a token id")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"bias {bias} for token {key} is outside [-100, 100]")
        return v

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, v: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if v is not None and not info.data.get("stream"):
            raise ValueError("only allowed when stream is true")
        return v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def bias(self) -> dict[int, float]:
        return {int(k): v for k, v in (self.logit_bias or {}).items()}

    @property
    def deterministic(self) -> bool:
        """Same request, same answer: greedy, or sampled with a seed."""
        return self.temperature == 0 or self.seed is not None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def continuous_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.continuous_usage_stats)


TokenIds = list[StrictInt]


def _is_token(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[list[int]]
    echo: StrictBool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    best_of: int | None = Field(None, ge=1)
    suffix: Any = None

    check_suffix = _refusing("suffix")

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, v: Any) -> Any:
        """One clear message for the four accepted shapes; a flat token list becomes one prompt."""
        if isinstance(v, str):
            return v
        ok = (
            isinstance(v, list)
            and v
            and (
                all(isinstance(x, str) for x in v)
                or all(_is_token(x) for x in v)
                or all(isinstance(x, list) and x and all(_is_token(t) for t in x) for x in v)
            )
        )
        if not ok:
            raise PydanticCustomError(
                "prompt",
                "must be a string, an array of strings, an array of token ids or an array of "
                "token-id arrays, none of them empty",
            )
        return [v] if _is_token(v[0]) else v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v != info.data.get("n", 1):
            raise PydanticCustomError("unsupported", "best_of other than n is not supported by this server")
        return v

    def prompt_logprobs(self) -> bool:
        return self.echo and self.logprobs is not None


class ChatMessage(BaseModel):
    """A message as the chat template sees it; extra keys (name, tool_calls...) go to the template."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, v: Any) -> Any:
        for part in v if isinstance(v, list) else []:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PydanticCustomError(
                    "unsupported", "only text content parts are supported by this server"
                )
        return v

    def for_template(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        if isinstance(self.content, list):
            out["content"] = "".join(p["text"] for p in self.content)
        return out


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: StrictBool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs_need_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v and not info.data.get("logprobs"):
            raise ValueError("requires logprobs to be true")
        return v

    def num_logprobs(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a prompt, or chat messages rendered through the chat template."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_generation_prompt: StrictBool = True
    add_special_tokens: StrictBool | None = None  # default: True for a prompt, False for messages
    return_token_strs: StrictBool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise PydanticCustomError("input", "give exactly one of prompt and messages")
        return self


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: TokenIds


# ---- responses ---------------------------------------------------------------------------------


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class CompletionLogProbs(BaseModel):
    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogProbs | None = None
    finish_reason: str | None = None
    prompt_token_ids: list[int] | None = _Extension()
    token_ids: list[int] | None = _Extension()


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo


class CompletionStreamResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = _Extension()


class ChatLogProb(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatLogProbsContent(ChatLogProb):
    top_logprobs: list[ChatLogProb] = Field(default_factory=list)


class ChatLogProbs(BaseModel):
    content: list[ChatLogProbsContent] | None = None


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    logprobs: ChatLogProbs | None = None
    finish_reason: str | None = None
    token_ids: list[int] | None = _Extension()


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo
    prompt_token_ids: list[int] | None = _Extension()


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = _Extension()
    content: str | None = _Extension()


class ChatStreamChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChatLogProbs | None = None
    finish_reason: str | None = None
    token_ids: list[int] | None = _Extension()


class ChatCompletionStreamResponse(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatStreamChoice]
    usage: UsageInfo | None = _Extension()
    prompt_token_ids: list[int] | None = _Extension()


class ModelCard(BaseModel):
    """A /v1/models entry; vLLM's `root` and `max_model_len` are included (`vllm bench` reads root)."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmops"
    root: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = _Extension()


class DetokenizeResponse(BaseModel):
    prompt: str


class VersionResponse(BaseModel):
    version: str


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def error_body(message: str, type_: str, code: str | int | None = None, param: str | None = None) -> dict:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    return ErrorResponse(error=ErrorInfo(message=message, type=type_, param=param, code=code)).model_dump()
