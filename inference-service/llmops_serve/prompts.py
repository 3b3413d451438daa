"""Prompts to token ids, and the checks that need the tokenizer or the model's limits."""

from __future__ import annotations

from typing import Any

from llmops_serve.errors import ApiError, invalid
from llmops_serve.protocol import ChatMessage, CompletionRequest
from llmops_serve.state import State


def check_token_ids(state: State, ids: list[int], param: str) -> None:
    if any(not 0 <= t < state.vocab for t in ids):
        raise invalid(param, f"token id out of range (the vocabulary has {state.vocab} tokens)")


def completion_prompts(state: State, req: CompletionRequest) -> tuple[list[list[int]], list[str | None]]:
    """Token ids per prompt, and each prompt's text where one was given (for echo)."""
    p = req.prompt
    texts: list[str] = [p] if isinstance(p, str) else p if isinstance(p[0], str) else []
    if texts:
        return [state.tokenizer(t)["input_ids"] for t in texts], list(texts)
    for ids in p:
        check_token_ids(state, ids, "prompt")
    return [list(ids) for ids in p], [None] * len(p)


def chat_text(state: State, messages: list[ChatMessage], add_generation_prompt: bool = True) -> str:
    rendered = [m.for_template() for m in messages]
    try:
        return state.tokenizer.apply_chat_template(
            rendered, add_generation_prompt=add_generation_prompt, tokenize=False
        )
    except Exception as exc:  # the template's own checks (roles, order) speak about the messages
        raise invalid("messages", f"the chat template refused them: {exc}") from None


def chat_prompt(state: State, messages: list[ChatMessage]) -> list[int]:
    return state.tokenizer(chat_text(state, messages), add_special_tokens=False)["input_ids"]


def check_logit_bias(state: State, bias: dict[int, float]) -> None:
    check_token_ids(state, list(bias), "logit_bias")


def max_tokens(state: State, req: Any, prompts: list[list[int]]) -> int:
    """Check prompt length and max_tokens against the limits; return the max_tokens to use."""
    s = state.settings
    longest = max(len(p) for p in prompts)
    if min(len(p) for p in prompts) == 0:
        raise invalid("prompt", "is empty")
    if s.max_prompt_tokens and longest > s.max_prompt_tokens:
        msg = f"prompt has {longest} tokens, more than the limit of {s.max_prompt_tokens}"
        raise ApiError(400, msg, code="context_length_exceeded", param="prompt")
    room = state.max_model_len - longest
    if room < 1:
        msg = f"prompt has {longest} tokens; this model's maximum context length is {state.max_model_len}"
        raise ApiError(400, msg, code="context_length_exceeded", param="prompt")
    if req.max_tokens is None:
        return min(room, s.max_tokens_cap or room)
    if s.max_tokens_cap and req.max_tokens > s.max_tokens_cap:
        raise invalid("max_tokens", f"{req.max_tokens} exceeds the server's cap of {s.max_tokens_cap}")
    if req.max_tokens > room:
        msg = (
            f"prompt ({longest} tokens) + max_tokens ({req.max_tokens}) exceeds this model's "
            f"maximum context length of {state.max_model_len}"
        )
        raise ApiError(400, msg, code="context_length_exceeded", param="max_tokens")
    return req.max_tokens
