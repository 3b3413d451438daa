"""Per-request token choice: logit bias, frequency/presence penalties, temperature, top-p, logprobs.

The engine takes the argmax of the whole batch at once for plain greedy rows (the common case) and
calls :func:`choose` only for rows that need more; each such row is handled on its own so a bad row
fails only its own request. Logprobs are the model's raw distribution (log-softmax of the logits,
before bias, penalties and temperature), as vLLM reports them by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

# Temperatures below this are greedy: dividing by them overflows (vLLM uses the same threshold).
SAMPLING_EPS = 1e-5


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # alternatives per token (0: the chosen token's only); None: off
    prompt_logprobs: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    @property
    def greedy(self) -> bool:
        return self.temperature < SAMPLING_EPS

    @property
    def penalised(self) -> bool:
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0

    @property
    def plain(self) -> bool:
        """Greedy with nothing to adjust or report: the batched argmax is the answer."""
        return self.greedy and not self.logit_bias and not self.penalised and self.logprobs is None


@dataclass
class Logprob:
    token_id: int
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class RowState:
    """What a sequence carries between steps for its own sampling."""

    generator: torch.Generator | None = None
    counts: torch.Tensor | None = None  # output token counts, for penalties
    bias_ids: torch.Tensor | None = None
    bias_values: torch.Tensor | None = None

    @classmethod
    def create(cls, params: SamplingParams, vocab: int, device: torch.device) -> RowState:
        state = cls()
        if params.seed is not None and not params.greedy:
            state.generator = torch.Generator(device=device).manual_seed(params.seed)
        if params.penalised:
            state.counts = torch.zeros(vocab, dtype=torch.float32, device=device)
        if params.logit_bias:
            state.bias_ids = torch.tensor(list(params.logit_bias), device=device)
            state.bias_values = torch.tensor(list(params.logit_bias.values()), device=device)
        return state

    def record(self, token: int) -> None:
        if self.counts is not None:
            self.counts[token] += 1


def choose(logits: torch.Tensor, params: SamplingParams, state: RowState) -> int:
    """The next token for one row of logits ``[vocab]``."""
    x = logits.float()
    if state.bias_ids is not None:
        x = x.index_add(0, state.bias_ids, state.bias_values)
    if state.counts is not None:
        x = x - params.frequency_penalty * state.counts - params.presence_penalty * (state.counts > 0)
    if params.greedy:
        return int(x.argmax())
    probs = torch.softmax(x / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, idx = probs.sort(descending=True)
        keep = sorted_p.cumsum(0) - sorted_p < params.top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter_(0, idx[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=state.generator))


def token_logprob(logits: torch.Tensor, token: int, top: int) -> Logprob:
    """The raw log-probability of ``token`` and the ``top`` most likely alternatives."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    alternatives: list[tuple[int, float]] = []
    if top:
        values, ids = lp.topk(top)
        alternatives = list(zip(ids.tolist(), values.tolist(), strict=True))
    return Logprob(token, float(lp[token]), alternatives)


def prompt_logprobs(logits: torch.Tensor, prompt: list[int], top: int) -> list[Logprob]:
    """Each prompt token's logprob given the tokens before it (the first has none), from ``[T, vocab]``."""
    out = [Logprob(prompt[0], None)]
    for i in range(1, len(prompt)):
        out.append(token_logprob(logits[i - 1], prompt[i], top))
    return out
