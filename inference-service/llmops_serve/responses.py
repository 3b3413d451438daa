"""Whole (non-streaming) responses built from the finished choices."""

from __future__ import annotations

from llmops_serve.generation import Choice, Job
from llmops_serve.logprobs import chat_logprobs, completion_logprobs
from llmops_serve.protocol import (
    ChatChoice,
    ChatCompletionResponse,
    ChatMessageOut,
    CompletionChoice,
    CompletionResponse,
    UsageInfo,
)


def usage(job: Job, completion_tokens: int) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=job.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=job.prompt_tokens + completion_tokens,
    )


def completion(job: Job, choices: list[Choice]) -> CompletionResponse:
    req, out = job.req, []
    for k, c in enumerate(choices):
        prefix = job.echo_text(k) if req.echo else ""
        entries = (c.prompt_logprobs or []) + c.logprobs
        out.append(
            CompletionChoice(
                index=k,
                text=prefix + c.text,
                logprobs=None if req.logprobs is None else completion_logprobs(job.state, entries),
                finish_reason=c.finish_reason,
                prompt_token_ids=job.prompt_of(k) if req.return_token_ids else None,
                token_ids=c.token_ids if req.return_token_ids else None,
            )
        )
    return CompletionResponse(
        id=job.id,
        created=job.created,
        model=job.state.settings.name,
        choices=out,
        usage=usage(job, sum(c.completion_tokens for c in choices)),
    )


def chat(job: Job, choices: list[Choice]) -> ChatCompletionResponse:
    req = job.req
    out = [
        ChatChoice(
            index=k,
            message=ChatMessageOut(content=c.text),
            logprobs=chat_logprobs(job.state, c.logprobs) if req.logprobs else None,
            finish_reason=c.finish_reason,
            token_ids=c.token_ids if req.return_token_ids else None,
        )
        for k, c in enumerate(choices)
    ]
    return ChatCompletionResponse(
        id=job.id,
        created=job.created,
        model=job.state.settings.name,
        choices=out,
        usage=usage(job, sum(c.completion_tokens for c in choices)),
        prompt_token_ids=job.prompts[0] if req.return_token_ids else None,
    )
