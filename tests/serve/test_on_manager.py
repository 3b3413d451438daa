"""The benchmark's alternative server (our API over transformers' continuous-batching manager,
``bench/serve_on_manager.py``) generates what ours generates, so bench/serve.py compares like with like."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bench.serve_on_manager import ManagerEngine, manager_in_place
from tests.serve.conftest import Live, live_server
from tests.serve.test_conformance import sse_chunks

PROMPTS = ["The cat sat on the", "Once upon a time", "a b c d e f"]


BODY = {"model": "tiny", "max_tokens": 12, "temperature": 0, "ignore_eos": True}


def completion(live: Live, prompt: str, **extra: object) -> httpx.Response:
    return httpx.post(live.url + "/v1/completions", json={**BODY, "prompt": prompt, **extra}, timeout=60)


def streamed_text(live: Live, prompt: str) -> str:
    chunks = sse_chunks(live, {**BODY, "prompt": prompt, "stream": True})
    return "".join(c["text"] for chunk in chunks for c in chunk["choices"])


def test_the_manager_serves_the_same_greedy_tokens_as_our_engine(server: Live, tiny_model: Path) -> None:
    ours = [completion(server, p).json()["choices"][0]["text"] for p in PROMPTS]
    with manager_in_place(), live_server(tiny_model, max_model_len=512) as live:
        assert isinstance(live.state.engine, ManagerEngine)
        theirs = [completion(live, p).json() for p in PROMPTS]
        streamed = [streamed_text(live, p) for p in PROMPTS]
        refused = completion(live, PROMPTS[0], logprobs=2)
    assert [t["choices"][0]["text"] for t in theirs] == ours
    assert [t["usage"]["completion_tokens"] for t in theirs] == [12] * len(PROMPTS)
    assert streamed == ours
    assert refused.status_code == 500
    assert "plain greedy requests only" in refused.json()["error"]["message"]


def test_the_context_puts_our_engine_back(tiny_model: Path) -> None:
    from llmops_serve import loader, state

    before = loader.fuse_llama, state.Engine
    with pytest.raises(RuntimeError), manager_in_place():
        raise RuntimeError
    assert (loader.fuse_llama, state.Engine) == before


def test_a_stop_string_ends_the_request_on_the_manager_too(server: Live, tiny_model: Path) -> None:
    ours = completion(server, PROMPTS[0]).json()["choices"][0]["text"]
    stop = ours[3:6]
    with manager_in_place(), live_server(tiny_model, max_model_len=512) as live:
        manager, cancelled = live.state.engine.manager, []
        cancel = manager.cancel_request
        manager.cancel_request = lambda rid: (cancelled.append(rid), cancel(rid))
        got = completion(live, PROMPTS[0], stop=[stop]).json()
    assert len(cancelled) == 1
    assert got["choices"][0]["text"] == ours[: ours.index(stop)]
    assert got["choices"][0]["finish_reason"] == "stop"
