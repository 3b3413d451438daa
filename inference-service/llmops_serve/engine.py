"""Continuous-batching engine: one thread owns the model and runs prefill and batched decode steps.

Each step admits waiting sequences (up to the batch and token limits) and prefills them one by one
with their own KV cache, merges them into the running batch's cache (left padding, masked), then
runs ONE forward over all running sequences for the next token. Finished or cancelled rows are
dropped between steps and all-padding columns are trimmed, so nothing is recomputed and the cache
stays as short as the longest live sequence. Results go back to asyncio via call_soon_threadsafe.
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
from transformers.cache_utils import DynamicLayer

from llmops_serve.detok import IncrementalDetokenizer, StopChecker

log = logging.getLogger("llmops_serve.engine")


class QueueFullError(Exception):
    """The waiting queue is at --max-queue."""


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False


@dataclass
class Event:
    """What a sequence reports to its request: text deltas, then one final event."""

    text: str = ""
    index: int = 0
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error"
    completion_tokens: int = 0
    error: str | None = None


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
    generator: torch.Generator | None = None
    detok: IncrementalDetokenizer | None = None
    stopper: StopChecker | None = None
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
        metrics: Any = None,
        model_name: str = "model",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.max_tokens_in_flight = max_tokens_in_flight
        self.max_prefill_tokens = max_prefill_tokens
        self.metrics = metrics
        self.model_name = model_name
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [B, cache_len], 0 on left padding
        self.lengths: list[int] = []  # real tokens in the cache per row
        self.steps = 0
        self._outbox: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, Event]]] = {}
        self._cv = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="llmops-engine", daemon=True)

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
            except Exception as exc:  # keep serving: fail the batch, not the process
                log.exception("engine step failed")
                for seq in [*self.running, *self._drain_waiting()]:
                    self._finish(seq, "error", error=f"engine error: {exc}")
                self._reset_batch()
                self._flush()

    def _drain_waiting(self) -> list[Sequence]:
        with self._cv:
            out = list(self.waiting)
            self.waiting.clear()
        return out

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduler iteration: drop dead rows, admit + prefill newcomers, one batched decode."""
        self._drop_finished()
        self._admit()
        self._flush()  # first tokens out before the decode step
        if self.running:
            self._decode()
        self._drop_finished()
        self._flush()
        self.steps += 1

    def _admit(self) -> None:
        budget = self.max_prefill_tokens
        while True:
            with self._cv:
                if not self.waiting or len(self.running) >= self.max_batch_size:
                    break
                seq = self.waiting[0]
                if seq.cancelled:
                    self.waiting.popleft()
                    self._finish(seq, "cancelled")
                    continue
                need = len(seq.prompt_ids)
                if self.running and need > budget:
                    break  # prefill the rest next step so running rows keep decoding
                if self.max_tokens_in_flight and self.running:
                    in_flight = sum(len(s.prompt_ids) + s.params.max_tokens for s in self.running)
                    if in_flight + need + seq.params.max_tokens > self.max_tokens_in_flight:
                        break
                self.waiting.popleft()
                self._gauges()
            budget -= need
            self._prefill(seq)

    def _prefill(self, seq: Sequence) -> None:
        """Run the prompt alone (no padding, so its KV is exactly what a solo run computes)."""
        if seq.params.seed is not None:
            seq.generator = torch.Generator(device=self.device).manual_seed(seq.params.seed)
        seq.detok = IncrementalDetokenizer(self.tokenizer)
        seq.stopper = StopChecker(seq.params.stop)
        ids = torch.tensor([seq.prompt_ids], device=self.device)
        cache = DynamicCache()
        out = self.model(
            input_ids=ids,
            position_ids=torch.arange(len(seq.prompt_ids), device=self.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        token = self._sample(out.logits[:, -1, :], [seq])[0]
        if self.metrics:
            self.metrics.ttft.labels(self.model_name).observe(time.monotonic() - seq.arrival)
        if self._accept(seq, token):
            return  # finished on its first token: never joins the batch
        self._merge(out.past_key_values, len(seq.prompt_ids), seq)

    def _merge(self, cache: DynamicCache, length: int, seq: Sequence) -> None:
        """Append one prefilled row to the batch cache, left-padding whichever side is shorter."""
        if self.cache is None or not self.running:
            self.cache = growing_cache([(layer.keys, layer.values) for layer in cache.layers])
            self.mask = torch.ones(1, length, dtype=torch.long, device=self.device)
            self.running, self.lengths = [seq], [length]
            self._gauges()
            return
        cur = self.mask.shape[1]
        width = max(cur, length)
        layers = []
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            k = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)], dim=0)
            v = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)], dim=0)
            layers.append((k, v))
        self.cache = growing_cache(layers)
        new_mask = torch.zeros(1, width, dtype=torch.long, device=self.device)
        new_mask[:, width - length :] = 1
        self.mask = torch.cat([_pad_left(self.mask, width, dim=1), new_mask], dim=0)
        self.running.append(seq)
        self.lengths.append(length)
        self._gauges()

    def _decode(self) -> None:
        """ONE forward for every running row: last token in, next token out, KV cache appended."""
        last = torch.tensor([[s.output_ids[-1]] for s in self.running], device=self.device)
        positions = torch.tensor([[n] for n in self.lengths], device=self.device)
        ones = torch.ones(len(self.running), 1, dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        out = self.model(
            input_ids=last,
            attention_mask=self.mask,
            position_ids=positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        tokens = self._sample(out.logits[:, -1, :], self.running)
        for i, (seq, token) in enumerate(zip(self.running, tokens, strict=True)):
            self.lengths[i] += 1
            self._accept(seq, token)

    def _sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        greedy = logits.argmax(dim=-1).tolist()
        out = []
        for row, seq in enumerate(seqs):
            p = seq.params
            if p.temperature <= 0:
                out.append(greedy[row])
                continue
            probs = torch.softmax(logits[row].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_p, idx = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < p.top_p  # always keeps the top token
                probs = torch.zeros_like(probs).scatter_(0, idx[keep], sorted_p[keep])
            out.append(int(torch.multinomial(probs, 1, generator=seq.generator)))
        return out

    def _accept(self, seq: Sequence, token: int) -> bool:
        """Record a sampled token, stream its text, and finish the sequence if it is done."""
        now = time.monotonic()
        if seq.output_ids and self.metrics:
            self.metrics.itl.labels(self.model_name).observe(now - seq.last_token_time)
        seq.last_token_time = now
        seq.output_ids.append(token)
        if seq.cancelled:
            self._finish(seq, "cancelled")
            return True
        if token in self.eos_ids and not seq.params.ignore_eos:
            self._finish(seq, "stop")
            return True
        text, stopped = seq.stopper.feed(seq.detok.add(token))
        if text:
            self._emit(seq, Event(text=text))
        if stopped:
            self._finish(seq, "stop")
        elif len(seq.output_ids) >= seq.params.max_tokens:
            self._finish(seq, "length")
        return seq.finished

    def _finish(self, seq: Sequence, reason: str, error: str | None = None) -> None:
        if seq.finished:
            return
        seq.finished = True
        tail = ""
        if reason in ("length", "stop") and seq.detok is not None:
            tail, _ = seq.stopper.feed(seq.detok.flush(), final=True)
        n = len(seq.output_ids)  # an EOS token counts as generated, as in OpenAI's usage
        if self.metrics:
            self.metrics.generation_tokens.labels(self.model_name).inc(n)
            self.metrics.prompt_tokens.labels(self.model_name).inc(len(seq.prompt_ids))
            if reason in ("stop", "length"):
                self.metrics.e2e.labels(self.model_name).observe(time.monotonic() - seq.arrival)
        self._emit(seq, Event(text=tail, finish_reason=reason, completion_tokens=n, error=error))

    def _emit(self, seq: Sequence, event: Event) -> None:
        if seq.cancelled and event.finish_reason is None:
            return
        event.index = seq.index
        self._outbox.setdefault(seq.loop, []).append((seq, event))

    def _flush(self) -> None:
        """Hand a step's events to each event loop in ONE thread-safe call (one wake-up per step)."""
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
        self._gauges()

    def _reset_batch(self) -> None:
        self.running, self.lengths, self.cache, self.mask = [], [], None, None
        self._gauges()

    def _gauges(self) -> None:
        if self.metrics:
            self.metrics.running.labels(self.model_name).set(len(self.running))
            self.metrics.waiting.labels(self.model_name).set(len(self.waiting))


class GrowingLayer(DynamicLayer):
    """A DynamicLayer with spare capacity: a decode step writes one column in place.

    DynamicLayer.update concatenates, copying the whole cache every step (O(length) per token, about a
    tenth of a decode step at batch 16 here); we copy only when the buffer is full, doubling it.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, spare: int = 64) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.n = keys.shape[2]
        self._k = _with_capacity(keys, self.n + spare)
        self._v = _with_capacity(values, self.n + spare)
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, : self.n], self._v[:, :, : self.n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        t = key_states.shape[2]
        if self.n + t > self._k.shape[2]:
            self._k = _with_capacity(self.keys, 2 * (self.n + t))
            self._v = _with_capacity(self.values, 2 * (self.n + t))
        self._k[:, :, self.n : self.n + t] = key_states
        self._v[:, :, self.n : self.n + t] = value_states
        self.n += t
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._views()


def growing_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [GrowingLayer(k, v) for k, v in kv]
    return cache


def _with_capacity(t: torch.Tensor, capacity: int) -> torch.Tensor:
    buf = t.new_empty(t.shape[0], t.shape[1], capacity, t.shape[3])
    buf[:, :, : t.shape[2]] = t
    return buf


def _deliver(items: list[tuple[Sequence, Event]]) -> None:
    for seq, event in items:
        seq.queue.put_nowait(event)


def _pad_left(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zero-pad `t` on the left of `dim` up to `width` (masked positions, so zeros are never read)."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
