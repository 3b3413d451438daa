"""Incremental detokenization and stop-sequence handling for streamed output.

Byte-level BPE pieces can split a multi-byte character, so text is released only when the decoded
tail is complete (no U+FFFD), using a small sliding window of tokens rather than re-decoding
everything. The concatenation of released deltas is the decoded text, so streamed and
non-streamed outputs agree by construction.
"""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns a growing token list into text deltas (the prefix/read offsets scheme of TGI and vLLM)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the decode window (context for correct spacing)
        self.read = 0  # tokens before this were already released as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        self.ids.append(token)
        done = self._decode(self.ids[self.prefix : self.read])
        full = self._decode(self.ids[self.prefix :])
        if len(full) > len(done) and not full.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return full[len(done) :]
        return ""

    def flush(self) -> str:
        """Release whatever is held back (an incomplete character decodes as U+FFFD)."""
        done = self._decode(self.ids[self.prefix : self.read])
        full = self._decode(self.ids[self.prefix :])
        self.prefix = self.read = len(self.ids)
        return full[len(done) :]


class StopChecker:
    """Holds back text that could be the start of a stop string; cuts output at the first stop."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, text: str, final: bool = False) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        if self.hit:
            return "", True
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending, self.hit = self.pending[: min(hits)], "", True
            return out, True
        if final:
            out, self.pending = self.pending, ""
            return out, False
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        cut = len(self.pending) - hold
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False
