"""Continuous-batching engine: one thread owns the model and runs prefill and batched decode steps.

Each step drops cancelled and finished rows, then either admits waiting sequences (up to the batch and
token limits) and prefills them (left-padded, masked; on CPU in chunks of ``CPU_PREFILL_CHUNK``
tokens, each chunk's first tokens sent before the next) into fresh KV caches, merged
into the running batch's cache (left padding, masked), or, when no one was admitted, runs ONE
forward over all running sequences for the next token (prefill first, see ``Engine.step``).
All-padding columns are trimmed, so nothing is recomputed and the cache stays as short as the
longest live sequence. Results go back to asyncio via call_soon_threadsafe, one call per step (and per
prefill chunk).

Isolation: whatever a request asks for is checked before it gets here, and everything done for one
sequence alone (its prefill, its sampling, its stop strings) runs under its own try, so a failure
ends that request with an error and no other request sees it. Only a failure of the batched forward
itself, which no request's parameters can cause, fails the batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from llmops_serve.detok import IncrementalDetokenizer, StopChecker
from llmops_serve.kvcache import growing_cache, pad_left
from llmops_serve.llama_fused import lean_for
from llmops_serve.metrics import Metrics
from llmops_serve.sampling import Logprob, RowState, SamplingParams, choose, prompt_logprobs, token_logprob

log = logging.getLogger("llmops_serve.engine")


# A CPU decode step with fewer multiply-adds than this (rows x every linear's weights) runs on one
# intra-op thread. Its ~100 small ops each wake the sleeping OpenMP workers (the server runs them
# passive, see __main__), and below this size the wake-ups cost more than the second core gives; one
# thread also leaves a core to the event loop. Measured with bench/serve_engine.py: the 4.5M model at batch
# 16 (67M) is faster serial, at batch 24 (100M) even; the 99.9M model gains from two threads at
# batch 4 (340M). Prefill keeps every thread (its GEMMs are large).
SERIAL_DECODE_MACS = 80_000_000

# On CPU newcomers are prefilled in chunks of this many tokens (padded; at least one prompt), and each
# chunk's first tokens are sent before the next chunk's forward. A CPU prefill takes time in
# proportion to its tokens, so a burst's first requests get their first token after their own chunk
# rather than after the whole burst. All chunks run before the burst's first decode, so the batch
# decodes as before. Each forward also has a fixed cost (~3.5 ms on the 4.5M model): 256 tokens beat
# 128 on both bench models in tokens/s and matched or beat it in time to first token; 64 and one
# prompt at a time lost. Measured with bench/serve.py at concurrency 16 (docs/benchmarks-serve.md).
# A GPU forward costs about the same for few tokens as for many, so there the step's prefill stays
# one forward.
CPU_PREFILL_CHUNK = 256


class QueueFullError(Exception):
    """The waiting queue is at --max-queue."""


@dataclass
class Event:
    """What a sequence reports to its request: one event per generated token, the last one final."""

    text: str = ""
    index: int = 0
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Logprob] | None = None
    prompt_logprobs: list[Logprob] | None = None  # on the first event, when asked for
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    completion_tokens: int = 0
    error: str | None = None

    def merge(self, later: Event) -> Event:
        """This event followed by ``later`` (same sequence) as one, for a stream that fell behind."""
        logprobs = None if self.logprobs is None else [*self.logprobs, *(later.logprobs or [])]
        return Event(
            self.text + later.text,
            self.index,
            [*self.token_ids, *later.token_ids],
            logprobs,
            self.prompt_logprobs or later.prompt_logprobs,
            later.finish_reason,
            later.completion_tokens,
            later.error,
        )


@dataclass
class Sequence:
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]
    index: int = 0  # choice index within its request
    request_id: str = "-"
    arrival: float = field(default_factory=time.monotonic)
    output_ids: list[int] = field(default_factory=list)
    cancelled: bool = False
    finished: bool = False
    row: RowState | None = None
    detok: IncrementalDetokenizer | None = None
    stopper: StopChecker | None = None
    prompt_logprobs: list[Logprob] | None = None
    scheduled: float = 0.0
    first_token_time: float = 0.0
    last_token_time: float = 0.0

    def cancel(self) -> None:
        """Called from the event loop (client gone); the engine drops the row at its next step."""
        self.cancelled = True


class Engine:
    """Owns the model; `submit` from the event loop, everything else runs on the engine thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 16,
        max_queue: int = 256,
        max_tokens_in_flight: int | None = None,
        max_prefill_tokens: int = 4096,
        prefill_chunk: int | None = None,
        max_model_len: int = 2048,
        metrics: Metrics | None = None,
        serial_decode_macs: int = SERIAL_DECODE_MACS,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.vocab = model.get_output_embeddings().weight.shape[0]
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_tokens_in_flight = max_tokens_in_flight
        self.max_prefill_tokens = max_prefill_tokens
        self.kv_budget = max_tokens_in_flight or max_batch_size * max_model_len
        self.metrics = metrics
        self.lean = lean_for(model)  # fused fp32 CPU Llamas: prefill and decode without transformers' forward
        macs = sum(m.in_features * m.out_features for m in model.modules() if hasattr(m, "out_features"))
        self.serial_rows = serial_decode_macs // max(1, macs) if self.device.type == "cpu" else 0
        cpu_chunk = CPU_PREFILL_CHUNK if self.device.type == "cpu" else max_prefill_tokens
        self.prefill_chunk = prefill_chunk or cpu_chunk
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [B, cache_len], 0 on left padding
        self.lengths: list[int] = []  # real tokens in the cache per row
        self.steps = 0
        self._step_tokens = 0
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, Event]]] = {}
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="llmops-engine", daemon=True)
        self._gauges()

    # ---- event-loop side -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def shutdown(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=10)

    def submit(self, seqs: list[Sequence]) -> None:
        """Queue sequences (all or none); raises QueueFullError past --max-queue."""
        with self._cv:
            if len(self.waiting) + len(seqs) > self.max_queue:
                raise QueueFullError
            self.waiting.extend(seqs)
            self._gauges()
            self._cv.notify()

    def cancel(self, seqs: list[Sequence]) -> None:
        """Free the rows of a request that is over (finished, failed, timed out or abandoned)."""
        live = [s for s in seqs if not s.finished]
        for s in live:
            s.cancel()
        if live:
            self.wake()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify()

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    # ---- engine thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cv:
                while not self._stop and not self.waiting and not self.running:
                    self._cv.wait()
                if self._stop:
                    return
            try:
                self.step()
            except Exception as exc:  # the batched forward failed: fail the batch, keep serving
                log.exception("engine step failed")
                for seq in self.running:
                    self._finish(seq, "error", error=f"engine error: {exc}")
                self._reset_batch()
                self._flush()

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduler iteration: drop dead rows, then prefill newcomers or, when none were
        admitted, one batched decode.

        Prefill first: a step that admits newcomers runs only their prefill, so requests that arrive
        together (a burst) are all prefilled before the running rows take their next token, and join
        the batch in step with them (measured: +9 % tokens/s at concurrency 16, docs/benchmarks-serve.md).
        Only newcomers that join the batch count (not those done after their first token), so running
        rows wait at most until the batch is full, and never behind a prefill that
        ``max_prefill_tokens`` splits (long prompts): they decode between its parts.
        """
        self._step_tokens = 0
        self._drop_cancelled_waiting()
        self._drop_finished()
        admitted = self._admit()
        if self.running and not admitted:
            self._decode()
        self._drop_finished()
        self._flush()
        self._gauges()
        if self.metrics and self._step_tokens:
            self.metrics.iteration_tokens.observe(self._step_tokens)
        self.steps += 1

    def _drop_cancelled_waiting(self) -> None:
        """Queued requests whose clients left: gone now, not when they reach the head of the queue."""
        with self._cv:
            gone = [s for s in self.waiting if s.cancelled]
            if gone:
                self.waiting = collections.deque(s for s in self.waiting if not s.cancelled)
        for seq in gone:
            self._finish(seq, "cancelled")

    def _admit(self) -> bool:
        """Take the waiting sequences that fit (batch size, token budgets) and prefill them a chunk
        (``prefill_chunk`` tokens) at a time, each chunk's first tokens sent before the next one's
        prefill; True when the step should run only that prefill (see :meth:`step`): some joined the
        batch, and the prefill budget held no one back."""
        running, budget, chunks = len(self.running), self.max_prefill_tokens, 0
        while True:
            group, padded, split = self._take(budget)
            if not group:
                break
            if chunks:
                self._flush()  # the chunk before's first tokens go out before this one's prefill
            self._prefill(group)
            budget -= padded
            chunks += 1
            if split:
                break
        return len(self.running) > running and not split

    def _take(self, budget: int) -> tuple[list[Sequence], int, bool]:
        """The next chunk: waiting sequences that fit the batch, ``prefill_chunk`` tokens and the
        step's prefill ``budget`` (``split`` when that holds one back), and its padded tokens."""
        group: list[Sequence] = []
        longest = 0
        with self._cv:
            while self.waiting and len(self.running) + len(group) < self.max_batch_size:
                seq = self.waiting[0]
                need = len(seq.prompt_ids)
                padded = (len(group) + 1) * max(longest, need)  # the prefill forward is padded
                if (self.running or group) and padded > budget:
                    return group, len(group) * longest, True  # the rest after the running rows' decode
                if group and padded > self.prefill_chunk:  # never first on a GPU: there chunk >= budget
                    break
                if self.max_tokens_in_flight and (self.running or group):
                    in_flight = sum(len(s.prompt_ids) + s.params.max_tokens for s in [*self.running, *group])
                    if in_flight + need + seq.params.max_tokens > self.max_tokens_in_flight:
                        break
                group.append(self.waiting.popleft())
                longest = max(longest, need)
        return group, len(group) * longest, False

    def _prefill(self, group: list[Sequence]) -> None:
        """ONE forward over the newcomers' prompts (left-padded, masked), then each samples its first token.

        A lone prompt runs unpadded, as a solo run computes it. If the batched forward fails,
        each prompt is retried alone, so only a prompt that fails by itself fails its request.
        """
        now = time.monotonic()
        for seq in group:
            seq.scheduled = seq.scheduled or now
            seq.row = RowState.create(seq.params, self.vocab, self.device)
            seq.detok = IncrementalDetokenizer(self.tokenizer)
            seq.stopper = StopChecker(seq.params.stop)
        lengths = [len(s.prompt_ids) for s in group]
        width = max(lengths)
        pads = [width - n for n in lengths]
        ids = torch.tensor(
            [[0] * p + s.prompt_ids for p, s in zip(pads, group, strict=True)], device=self.device
        )
        mask = torch.tensor(
            [[0] * p + [1] * n for p, n in zip(pads, lengths, strict=True)], device=self.device
        )
        positions = torch.tensor(
            [[0] * p + list(range(n)) for p, n in zip(pads, lengths, strict=True)], device=self.device
        )
        padded = mask if min(lengths) < width else None
        all_logits = any(s.params.prompt_logprobs for s in group)
        try:
            if self.lean is not None:
                logits, kv = self.lean.prefill(ids, positions, padded, all_logits)
            else:
                out = self.model(
                    input_ids=ids,
                    attention_mask=padded,
                    position_ids=positions,
                    past_key_values=DynamicCache(),
                    use_cache=True,
                    logits_to_keep=0 if all_logits else 1,
                )
                logits, kv = out.logits, [(lay.keys, lay.values) for lay in out.past_key_values.layers]
        except Exception as exc:
            if len(group) > 1:
                for seq in group:
                    self._prefill([seq])
                return
            log.exception("prefill failed request_id=%s", group[0].request_id)
            self._finish(group[0], "error", error=f"prefill failed: {exc}")
            return
        self._step_tokens += sum(lengths)
        last = logits[:, -1]
        greedy = last.argmax(dim=-1).tolist()
        keep = []
        for i, (seq, n) in enumerate(zip(group, lengths, strict=True)):
            try:
                p = seq.params
                if p.prompt_logprobs:
                    seq.prompt_logprobs = prompt_logprobs(
                        logits[i, width - n :], seq.prompt_ids, p.logprobs or 0
                    )
                token = greedy[i] if p.plain else choose(last[i], p, seq.row)
                if not self._accept(seq, token, last[i]):
                    keep.append(i)  # finished on its first token: never joins the batch
            except Exception as exc:  # this request's own failure: only it sees it
                log.exception("prefill failed request_id=%s", seq.request_id)
                self._finish(seq, "error", error=f"prefill failed: {exc}")
        if keep:
            self._merge(kv, mask, [group[i] for i in keep], keep)

    def _merge(
        self,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        seqs: list[Sequence],
        rows: list[int],
    ) -> None:
        """Append prefilled rows (per layer: keys, values) to the batch cache, left-padding the shorter side."""
        idx = torch.tensor(rows, device=self.device)
        new_kv = [(k[idx], v[idx]) for k, v in kv]
        new_mask = mask[idx]
        lengths = [len(s.prompt_ids) for s in seqs]
        if self.cache is None or not self.running:
            self.cache, self.mask = growing_cache(new_kv), new_mask
            self.running, self.lengths = list(seqs), lengths
            return
        width = max(self.mask.shape[1], new_mask.shape[1])
        layers = []
        for old, (k, v) in zip(self.cache.layers, new_kv, strict=True):
            keys = torch.cat([pad_left(old.keys, width), pad_left(k, width)], dim=0)
            values = torch.cat([pad_left(old.values, width), pad_left(v, width)], dim=0)
            layers.append((keys, values))
        self.cache = growing_cache(layers)
        self.mask = torch.cat([pad_left(self.mask, width, dim=1), pad_left(new_mask, width, dim=1)], dim=0)
        self.running += seqs
        self.lengths += lengths

    def _decode(self) -> None:
        """ONE forward for every running row: last token in, next token out, KV cache appended."""
        ids, positions = torch.tensor(
            [[s.output_ids[-1] for s in self.running], self.lengths], device=self.device
        ).unbind()
        ones = torch.ones(len(self.running), 1, dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        if len(self.running) > self.serial_rows:
            logits = self._decode_forward(ids, positions)
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                logits = self._decode_forward(ids, positions)
            finally:
                torch.set_num_threads(threads)
        self._step_tokens += len(self.running)
        greedy = logits.argmax(dim=-1).tolist()
        for i, seq in enumerate(self.running):
            self.lengths[i] += 1
            try:
                token = greedy[i] if seq.params.plain else choose(logits[i], seq.params, seq.row)
                self._accept(seq, token, logits[i])
            except Exception as exc:  # this row's own failure: only its request sees it
                log.exception("sampling failed request_id=%s", seq.request_id)
                self._finish(seq, "error", error=f"sampling failed: {exc}")

    def _decode_forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if self.lean is not None:
            return self.lean.decode(ids, positions, self.mask.bool(), self.cache)
        out = self.model(
            input_ids=ids[:, None],
            attention_mask=self.mask,
            position_ids=positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        return out.logits[:, -1, :]

    def _accept(self, seq: Sequence, token: int, logits: torch.Tensor) -> bool:
        """Record a sampled token, send it (text, id, logprobs), and finish the sequence if it is done."""
        now = time.monotonic()
        if not seq.output_ids:
            seq.first_token_time = now
            if self.metrics:
                self.metrics.ttft.observe(now - seq.arrival)
        elif self.metrics:
            self.metrics.itl.observe(now - seq.last_token_time)
        seq.last_token_time = now
        seq.output_ids.append(token)
        seq.row.record(token)
        if seq.cancelled:
            self._finish(seq, "cancelled")
            return True
        p = seq.params
        event = Event(token_ids=[token])
        if p.logprobs is not None:
            event.logprobs = [token_logprob(logits, token, p.logprobs)]
        if len(seq.output_ids) == 1:
            event.prompt_logprobs = seq.prompt_logprobs
        if token in self.eos_ids and not p.ignore_eos:
            self._finish(seq, "stop", event)
            return True
        event.text, stopped = seq.stopper.feed(seq.detok.add(token))
        if stopped:
            self._finish(seq, "stop", event)
        elif len(seq.output_ids) >= p.max_tokens:
            self._finish(seq, "length", event)
        else:
            self._emit(seq, event)
        return seq.finished

    def _finish(
        self, seq: Sequence, reason: str, event: Event | None = None, error: str | None = None
    ) -> None:
        if seq.finished:
            return
        seq.finished = True
        event = event or Event()
        if reason in ("length", "stop") and seq.detok is not None:
            tail, _ = seq.stopper.feed(seq.detok.flush(), final=True)
            event.text += tail
        event.finish_reason, event.error = reason, error
        event.completion_tokens = len(seq.output_ids)  # an EOS token counts, as in OpenAI's usage
        if self.metrics:
            self._observe(seq, reason)
        self._emit(seq, event)

    def _observe(self, seq: Sequence, reason: str) -> None:
        m, now = self.metrics, time.monotonic()
        n = len(seq.output_ids)
        m.generation_tokens.inc(n)
        m.success["abort" if reason == "cancelled" else reason].inc()
        if not seq.scheduled:
            return  # left the queue before it ran
        m.prompt_tokens.inc(len(seq.prompt_ids))
        m.request_prompt_tokens.observe(len(seq.prompt_ids))
        m.request_generation_tokens.observe(n)
        m.queue_time.observe(seq.scheduled - seq.arrival)
        if n:
            m.prefill_time.observe(seq.first_token_time - seq.scheduled)
            m.decode_time.observe(seq.last_token_time - seq.first_token_time)
            m.inference_time.observe(seq.last_token_time - seq.scheduled)
        if reason in ("stop", "length"):
            m.e2e.observe(now - seq.arrival)

    def _emit(self, seq: Sequence, event: Event) -> None:
        if seq.cancelled and event.finish_reason is None:
            return
        event.index = seq.index
        self._outbox.setdefault(seq.loop, []).append((seq, event))

    def _flush(self) -> None:
        """Hand the events so far to each event loop in ONE thread-safe call (one wake-up per step or chunk)."""
        outbox, self._outbox = self._outbox, {}
        for loop, items in outbox.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # the requests' loop is gone
                for seq, _ in items:
                    seq.cancelled = True

    def _drop_finished(self) -> None:
        for seq in self.running:
            if seq.cancelled and not seq.finished:
                self._finish(seq, "cancelled")
        keep = [i for i, s in enumerate(self.running) if not s.finished]
        if len(keep) == len(self.running):
            return
        if not keep:
            self._reset_batch()
            return
        idx = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(idx)
        self.mask = self.mask[idx]
        self.running = [self.running[i] for i in keep]
        self.lengths = [self.lengths[i] for i in keep]
        pad = self.mask.shape[1] - max(self.lengths)
        if pad > 0:  # columns that are padding in every remaining row: cut them away
            self.mask = self.mask[:, pad:]
            kv = [(lay.keys[:, :, pad:], lay.values[:, :, pad:]) for lay in self.cache.layers]
            self.cache = growing_cache(kv)

    def _reset_batch(self) -> None:
        self.running, self.lengths, self.cache, self.mask = [], [], None, None

    def _gauges(self) -> None:
        if self.metrics:
            self.metrics.running.set(len(self.running))
            self.metrics.waiting.set(len(self.waiting))
            held = 0 if self.mask is None else self.mask.numel()  # padding is memory held too
            self.metrics.kv_cache_usage.set(min(1.0, held / self.kv_budget))


def _deliver(items: list[tuple[Sequence, Event]]) -> None:
    for seq, event in items:
        seq.queue.put_nowait(event)
