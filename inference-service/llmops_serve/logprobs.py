"""Engine logprobs in the two OpenAI shapes: completions' parallel lists, chat's list of entries.

Tokens are reported as their own decoded text. Each position's alternatives include the chosen
token, as vLLM reports them, so ``logprobs: 0`` still names the token that was picked.
"""

from __future__ import annotations

from llmops_serve.protocol import ChatLogProb, ChatLogProbs, ChatLogProbsContent, CompletionLogProbs
from llmops_serve.sampling import Logprob
from llmops_serve.state import State


def _alternatives(entry: Logprob) -> list[tuple[int, float]]:
    top = list(entry.top)
    if entry.logprob is not None and all(t != entry.token_id for t, _ in top):
        top.append((entry.token_id, entry.logprob))
    return top


def completion_logprobs(state: State, entries: list[Logprob], offset: int = 0) -> CompletionLogProbs:
    """Completions' shape; ``offset`` is where the first token's text starts in the choice's text."""
    out = CompletionLogProbs()
    for e in entries:
        text = state.token_text(e.token_id)
        out.tokens.append(text)
        out.token_logprobs.append(e.logprob)
        out.text_offset.append(offset)
        offset += len(text)
        out.top_logprobs.append(
            None if e.logprob is None else {state.token_text(t): lp for t, lp in _alternatives(e)}
        )
    return out


def _chat_entry(state: State, token: int, logprob: float) -> ChatLogProb:
    text = state.token_text(token)
    return ChatLogProb(token=text, logprob=logprob, bytes=list(text.encode()))


def chat_logprobs(state: State, entries: list[Logprob]) -> ChatLogProbs:
    content = []
    for e in entries:
        head = _chat_entry(state, e.token_id, e.logprob)
        top = [_chat_entry(state, t, lp) for t, lp in e.top]
        content.append(ChatLogProbsContent(**head.model_dump(), top_logprobs=top))
    return ChatLogProbs(content=content)
