"""A request's generation: its sequences in the engine, and their events gathered per choice.

A request becomes ``len(prompts) * n`` sequences (choice ``k`` is prompt ``k // n``). A non-streaming
request watches its connection while it waits, so a client that gives up frees its rows at the
engine's next step, exactly as a stream's does.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from llmops_serve.engine import Event, QueueFullError, Sequence
from llmops_serve.errors import ApiError
from llmops_serve.protocol import INT64_MIN, ChatCompletionRequest, new_id, now
from llmops_serve.sampling import Logprob, SamplingParams
from llmops_serve.state import State


@dataclass
class Choice:
    """Everything one sequence produced."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Logprob] = field(default_factory=list)
    prompt_logprobs: list[Logprob] | None = None
    finish_reason: str | None = None
    completion_tokens: int = 0

    def add(self, ev: Event) -> None:
        self.text += ev.text
        self.token_ids += ev.token_ids
        self.logprobs += ev.logprobs or []
        self.prompt_logprobs = self.prompt_logprobs or ev.prompt_logprobs
        if ev.finish_reason is not None:
            self.finish_reason, self.completion_tokens = ev.finish_reason, ev.completion_tokens


@dataclass
class Job:
    state: State
    req: Any
    prompts: list[list[int]]
    prompt_texts: list[str | None]
    seqs: list[Sequence]
    queue: asyncio.Queue[Event]
    deadline: float
    id: str
    created: int = field(default_factory=now)

    @property
    def chat(self) -> bool:
        return isinstance(self.req, ChatCompletionRequest)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    def prompt_of(self, choice: int) -> list[int]:
        return self.prompts[choice // self.req.n]

    def echo_text(self, choice: int) -> str:
        """The prompt as text, for ``echo``: as given, or decoded from its token ids."""
        k = choice // self.req.n
        text = self.prompt_texts[k]
        return text if text is not None else self.state.tokenizer.decode(self.prompts[k])

    def cancel(self) -> None:
        self.state.engine.cancel(self.seqs)


def _seed(seed: int | None, choice: int) -> int | None:
    """Choice j of a seeded request samples with seed + j, wrapped to stay a 64-bit integer."""
    if seed is None:
        return None
    return (seed + choice - INT64_MIN) % 2**64 + INT64_MIN


def sampling_params(req: Any, max_tokens: int, choice: int) -> SamplingParams:
    chat = isinstance(req, ChatCompletionRequest)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        seed=_seed(req.seed, choice),
        stop=req.stop_list(),
        ignore_eos=req.ignore_eos,
        logprobs=req.num_logprobs() if chat else req.logprobs,
        prompt_logprobs=False if chat else req.prompt_logprobs(),
        logit_bias=req.bias(),
        frequency_penalty=req.frequency_penalty,
        presence_penalty=req.presence_penalty,
    )


def start(
    state: State,
    request: Request,
    req: Any,
    prompts: list[list[int]],
    max_tokens: int,
    prompt_texts: list[str | None] | None = None,
) -> Job:
    """Queue every sequence of the request (all or none: 429 when the queue is full)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    rid = request.scope["state"]["request_id"]
    seqs = [
        Sequence(ids, sampling_params(req, max_tokens, j), loop, queue, index=i * req.n + j, request_id=rid)
        for i, ids in enumerate(prompts)
        for j in range(req.n)
    ]
    try:
        state.engine.submit(seqs)
    except QueueFullError:
        err = ApiError(429, "server queue is full, retry later", "rate_limit_exceeded", "queue_full")
        err.headers["Retry-After"] = "1"
        raise err from None
    prefix = "chatcmpl" if isinstance(req, ChatCompletionRequest) else "cmpl"
    return Job(
        state,
        req,
        prompts,
        prompt_texts or [None] * len(prompts),
        seqs,
        queue,
        loop.time() + state.settings.request_timeout,
        new_id(prefix),
    )


def engine_error(ev: Event) -> ApiError:
    return ApiError(500, ev.error or "engine error", "internal_error", "engine_error")


async def _cancel_on_disconnect(request: Request, job: Job) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    job.cancel()


async def collect(job: Job, request: Request) -> list[Choice]:
    """Wait for every choice to finish; cancels the sequences if the client goes away meanwhile."""
    loop = asyncio.get_running_loop()
    choices = [Choice() for _ in job.seqs]
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    try:
        done = 0
        while done < len(choices):
            left = job.deadline - loop.time()
            try:
                ev = (
                    job.queue.get_nowait()
                    if not job.queue.empty()
                    else await asyncio.wait_for(job.queue.get(), left)
                )
            except TimeoutError:
                raise ApiError(504, "request timed out", "timeout", "timeout") from None
            if ev.error:
                raise engine_error(ev)
            if ev.finish_reason == "cancelled":
                raise ApiError(499, "client disconnected", "cancelled")
            choices[ev.index].add(ev)
            done += ev.finish_reason is not None
        return choices
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        job.cancel()
