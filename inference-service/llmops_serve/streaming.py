"""Server-sent events for a streaming request, in OpenAI's chunk format.

Frames are ``data: {json}`` lines, ``: keep-alive`` comments while nothing happens, ``data: [DONE]``
last. A client that falls behind gets one merged frame per choice, not a backlog of small ones. A
client that disconnects stops the generator; its ``finally`` frees the rows at the next step.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from pydantic import BaseModel
from pydantic_core import to_json

from llmops_serve.engine import Event
from llmops_serve.generation import Job
from llmops_serve.logprobs import chat_logprobs, completion_logprobs
from llmops_serve.protocol import (
    ChatCompletionStreamResponse,
    ChatStreamChoice,
    CompletionChoice,
    CompletionStreamResponse,
    DeltaMessage,
    UsageInfo,
    error_body,
)

KEEPALIVE_S = 10.0
DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"
_SLOT = "\u2063llmops-text\u2063"  # stands for a frame's text in its template; never in real output


def sse(body: BaseModel | dict) -> str:
    data = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body, ensure_ascii=False)
    return f"data: {data}\n\n"


async def _events(job: Job) -> AsyncIterator[Event | None]:
    """The job's events, merged per choice when several are waiting; None asks for a keep-alive."""
    loop = asyncio.get_running_loop()
    held: Event | None = None
    done = 0
    while done < len(job.seqs):
        left = job.deadline - loop.time()
        if left <= 0:
            raise TimeoutError
        if held is not None:
            ev, held = held, None
        elif not job.queue.empty():  # fast path: no timer task when the engine is ahead of us
            ev = job.queue.get_nowait()
        else:
            try:
                ev = await asyncio.wait_for(job.queue.get(), timeout=min(left, KEEPALIVE_S))
            except TimeoutError:
                yield None
                continue
        while ev.finish_reason is None and not job.queue.empty():
            nxt = job.queue.get_nowait()
            if nxt.index != ev.index or nxt.error:
                held = nxt
                break
            ev = ev.merge(nxt)
        done += ev.finish_reason is not None
        yield ev


class _Chunks:
    """Turns events into chunks, keeping what each choice has sent so far."""

    def __init__(self, job: Job) -> None:
        self.job, self.req = job, job.req
        self.started = [False] * len(job.seqs)
        self.offsets = [0] * len(job.seqs)
        self.completion_tokens = 0
        self.verbose = self.req.return_token_ids or bool(self.req.logprobs)
        # no per-token extras (completions' logprobs=0 still asks for the sampled token's logprob, and 0 == False)
        self.plain = not self.req.return_token_ids and (
            self.req.logprobs is None or self.req.logprobs is False
        )
        self.templates: dict[int, tuple[str, str]] = {}

    def usage(self) -> UsageInfo:
        p, c = self.job.prompt_tokens, self.completion_tokens
        return UsageInfo(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    def chat_opening(self, k: int) -> ChatCompletionStreamResponse:
        prompt_ids = self.job.prompts[0] if self.req.return_token_ids and k == 0 else None
        delta = DeltaMessage(role="assistant", content="")
        return self._chat([ChatStreamChoice(index=k, delta=delta)], prompt_ids)

    def frame(self, ev: Event) -> str | None:
        """The SSE frame for an event, or None when it carries nothing to send.

        A plain text delta (most frames) is written into a per-choice template dumped once, with
        the text encoded by the same serializer, so it costs no model construction; the bytes are
        those of ``sse(self.chunk(ev))``.
        """
        if not (ev.text and self.plain and self.started[ev.index]) or ev.finish_reason:
            body = self.chunk(ev)
            return None if body is None else sse(body)
        self.completion_tokens += len(ev.token_ids)
        if self._continuous() is not None:
            return sse(self._text_chunk(ev.index, ev.text))
        if (template := self.templates.get(ev.index)) is None:
            head, tail = self._text_chunk(ev.index, _SLOT).model_dump_json().split(_SLOT)
            template = self.templates[ev.index] = (f"data: {head}", f"{tail}\n\n")
        return template[0] + to_json(ev.text)[1:-1].decode() + template[1]

    def _text_chunk(self, index: int, text: str) -> BaseModel:
        if self.job.chat:
            return self._chat([ChatStreamChoice(index=index, delta=DeltaMessage(content=text))])
        return self._completion([CompletionChoice(index=index, text=text)])

    def chunk(self, ev: Event) -> BaseModel | None:
        self.completion_tokens += len(ev.token_ids)
        first, self.started[ev.index] = not self.started[ev.index], True
        echo = first and not self.job.chat and self.req.echo
        if not (ev.text or ev.finish_reason or echo or (self.verbose and ev.token_ids)):
            return None
        ids = ev.token_ids if self.req.return_token_ids else None
        if self.job.chat:
            choice = ChatStreamChoice(
                index=ev.index,
                delta=DeltaMessage(content=ev.text or None),
                logprobs=chat_logprobs(self.job.state, ev.logprobs) if self.req.logprobs else None,
                finish_reason=ev.finish_reason,
                token_ids=ids,
            )
            return self._chat([choice])
        text = (self.job.echo_text(ev.index) if echo else "") + ev.text
        choice = CompletionChoice(
            index=ev.index,
            text=text,
            logprobs=self._completion_logprobs(ev, first),
            finish_reason=ev.finish_reason,
            prompt_token_ids=self.job.prompt_of(ev.index) if first and ids is not None else None,
            token_ids=ids,
        )
        return self._completion([choice])

    def _completion_logprobs(self, ev: Event, first: bool):
        if self.req.logprobs is None:
            return None
        entries = ((ev.prompt_logprobs or []) if first else []) + (ev.logprobs or [])
        out = completion_logprobs(self.job.state, entries, self.offsets[ev.index])
        self.offsets[ev.index] += sum(len(t) for t in out.tokens)
        return out

    def _continuous(self) -> UsageInfo | None:
        return self.usage() if self.req.continuous_usage() else None

    def _chat(self, choices: list, prompt_ids: list[int] | None = None) -> ChatCompletionStreamResponse:
        j = self.job
        return ChatCompletionStreamResponse(
            id=j.id,
            created=j.created,
            model=j.state.settings.name,
            choices=choices,
            usage=self._continuous(),
            prompt_token_ids=prompt_ids,
        )

    def _completion(self, choices: list) -> CompletionStreamResponse:
        j = self.job
        return CompletionStreamResponse(
            id=j.id, created=j.created, model=j.state.settings.name, choices=choices, usage=self._continuous()
        )

    def final_usage(self) -> BaseModel:
        j = self.job
        kind = ChatCompletionStreamResponse if j.chat else CompletionStreamResponse
        return kind(id=j.id, created=j.created, model=j.state.settings.name, choices=[], usage=self.usage())


async def stream(job: Job) -> AsyncIterator[str]:
    chunks = _Chunks(job)
    try:
        if job.chat:
            for k in range(len(job.seqs)):
                yield sse(chunks.chat_opening(k))
        async for ev in _events(job):
            if ev is None:
                yield KEEPALIVE
            elif ev.error:
                yield sse(error_body(ev.error, "internal_error", "engine_error"))
                break
            elif (frame := chunks.frame(ev)) is not None:
                yield frame
        else:
            if job.req.include_usage():
                yield sse(chunks.final_usage())
        yield DONE
    except TimeoutError:
        yield sse(error_body("request timed out", "timeout", "timeout"))
        yield DONE
    finally:
        job.cancel()  # a client that disconnects frees its rows at the next engine step
