"""The official openai client against a live server: completions, chat, streaming, usage, metrics."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import openai
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.serve.conftest import live_server, wait_for

PROMPTS = [
    "The quick brown",
    "Once upon a time there",
    "Kubernetes",
    "def add(a",
    "Prices: 3",
    "The cache keeps keys",
    "Every morning the fox ran",
    "A stitch",
]


def client(server, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, **kw)


def metric(server, name: str, labels: str = "") -> float:
    text = httpx.get(server.url + "/metrics").text
    pattern = re.escape(name) + (r"\{[^}]*" + re.escape(labels) + r"[^}]*\}" if labels else r"(\{[^}]*\})?")
    m = re.search(r"^" + pattern + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(m.lastindex)) if m else 0.0


def test_health_ready_models(server):
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/ready").status_code == 200
    models = client(server).models.list().data
    assert [m.id for m in models] == ["tiny"]
    raw = httpx.get(server.url + "/v1/models").json()["data"][0]
    assert raw["object"] == "model" and raw["owned_by"] and raw["created"] > 0 and raw["root"]


def test_completion_matches_hf_generate(server, tiny_model):
    """Greedy output through the engine equals transformers' own greedy generate()."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = tok("Once upon a time", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        ref = model.generate(ids, max_new_tokens=150, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = tok.decode(ref[0, ids.shape[1] :], skip_special_tokens=True)
    r = client(server).completions.create(
        model="tiny",
        prompt="Once upon a time",
        max_tokens=150,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert r.choices[0].text == expected
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == ids.shape[1]
    assert r.usage.completion_tokens == 150
    assert r.usage.total_tokens == ids.shape[1] + 150


def test_chat_and_streaming_with_usage(server):
    c = client(server)
    messages = [{"role": "user", "content": "Tell me about the fox"}]
    full = c.chat.completions.create(model="tiny", messages=messages, max_tokens=30, temperature=0)
    assert full.choices[0].message.role == "assistant"
    assert full.usage.completion_tokens >= 1
    stream = c.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=30,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == full.choices[0].finish_reason


def test_sse_framing(server):
    body = {"model": "tiny", "prompt": "Café", "max_tokens": 12, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        raw = r.read().decode()
    frames = raw.split("\n\n")
    assert frames[-1] == "" and frames[-2] == "data: [DONE]"
    assert all(f.startswith(("data: ", ":")) for f in frames[:-1])


def test_stop_sequence_and_seed(server):
    c = client(server)
    base = c.completions.create(model="tiny", prompt="Every morning the fox", max_tokens=30, temperature=0)
    word = base.choices[0].text.split()[2]
    cut = c.completions.create(
        model="tiny", prompt="Every morning the fox", max_tokens=30, temperature=0, stop=[word]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == base.choices[0].text[: base.choices[0].text.index(word)]
    kw = {"model": "tiny", "prompt": "The", "max_tokens": 25, "temperature": 1.0, "seed": 7}
    a = c.completions.create(**kw).choices[0].text
    b = c.completions.create(**kw, extra_body={"ignore_eos": False, "user": "x"}).choices[0].text
    assert a == b


def test_n_choices(server):
    r = client(server).completions.create(
        model="tiny", prompt="The", max_tokens=10, temperature=0.9, seed=1, n=3
    )
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2]
    assert 3 <= r.usage.completion_tokens <= 30


def test_concurrent_streams_equal_sequential(server, tiny_model):
    """16 concurrent streaming requests give exactly the greedy outputs they give one by one, and
    those of transformers' generate() on the unmodified model (the server's linears are packed)."""
    prompts = [p + s for s in ("", " and") for p in PROMPTS]
    assert len(prompts) == 16

    async def one(c: openai.AsyncOpenAI, prompt: str) -> str:
        stream = await c.completions.create(
            model="tiny",
            prompt=prompt,
            max_tokens=48,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        return "".join([ch.choices[0].text async for ch in stream if ch.choices])

    async def main() -> tuple[list[str], list[str], float]:
        c = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        alone = [await one(c, p) for p in prompts]
        steps = server.state.engine.steps
        together = await asyncio.gather(*(one(c, p) for p in prompts))
        return alone, together, server.state.engine.steps - steps

    alone, together, steps = asyncio.run(main())
    assert together == alone
    assert len(set(alone)) > 8  # the prompts really differ
    assert steps < 16 * 48 / 2  # they shared decode steps, i.e. really ran batched
    assert any(type(m).__name__ == "PackedLinear" for m in server.state.engine.model.modules())
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    kw = {"max_new_tokens": 48, "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    with torch.inference_mode():
        for prompt, text in zip(prompts, together, strict=True):
            ids = tok(prompt, return_tensors="pt")["input_ids"]
            ref = model.generate(ids, **kw)[0, ids.shape[1] :]
            assert text == tok.decode(ref, skip_special_tokens=True), prompt


def test_metrics_move(server):
    before = {
        "prompt": metric(server, "vllm:prompt_tokens_total"),
        "gen": metric(server, "vllm:generation_tokens_total"),
        "ok": metric(server, "llmops_requests_total", 'status="200"'),
        "ttft": metric(server, "vllm:time_to_first_token_seconds_count"),
        "e2e": metric(server, "vllm:e2e_request_latency_seconds_count"),
        "itl": metric(server, "vllm:inter_token_latency_seconds_count"),
    }
    r = client(server).completions.create(
        model="tiny",
        prompt="Kubernetes schedules",
        max_tokens=9,
        temperature=0.5,
        extra_body={"ignore_eos": True},
    )
    assert metric(server, "vllm:prompt_tokens_total") - before["prompt"] == r.usage.prompt_tokens
    assert metric(server, "vllm:generation_tokens_total") - before["gen"] == 9
    assert metric(server, "llmops_requests_total", 'status="200"') - before["ok"] == 1
    assert metric(server, "vllm:time_to_first_token_seconds_count") - before["ttft"] == 1
    assert metric(server, "vllm:e2e_request_latency_seconds_count") - before["e2e"] == 1
    assert metric(server, "vllm:inter_token_latency_seconds_count") - before["itl"] == 8
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
        pattern = rf'^{name}{{model_name="tiny"}} 0\.0$'
        assert wait_for(lambda n=pattern: re.search(n, httpx.get(server.url + "/metrics").text, re.M)), name


def test_response_cache(server):
    c = client(server)
    hits, misses = (
        metric(server, "llmops_response_cache_hits_total"),
        metric(server, "llmops_response_cache_misses_total"),
    )
    gen = metric(server, "vllm:generation_tokens_total")
    a = c.completions.create(model="tiny", prompt="A stitch in", max_tokens=12, temperature=0)
    b = c.completions.create(model="tiny", prompt="A stitch in", max_tokens=12, temperature=0)
    assert a.choices[0].text == b.choices[0].text and a.id != b.id
    assert metric(server, "llmops_response_cache_hits_total") == hits + 1
    assert metric(server, "llmops_response_cache_misses_total") == misses + 1
    assert metric(server, "vllm:generation_tokens_total") - gen == a.usage.completion_tokens  # generated once
    c.completions.create(model="tiny", prompt="A stitch in", max_tokens=12, temperature=0.7)  # not cacheable
    assert metric(server, "llmops_response_cache_hits_total") == hits + 1


def test_disconnect_frees_slot(tiny_model):
    with live_server(tiny_model) as server:
        engine = server.state.engine
        body = {"model": "tiny", "prompt": "The", "max_tokens": 2000, "stream": True, "ignore_eos": True}
        with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
            lines = r.iter_lines()  # kept open: leaving the loop early would close the connection
            while not next(lines).startswith("data: {"):
                pass
            assert wait_for(lambda: engine.num_running == 1)
            assert metric(server, "vllm:num_requests_running", 'model_name="tiny"') == 1  # the HPA signal
            steps = engine.steps
            time.sleep(0.2)
            assert engine.num_running == 1 and engine.steps > steps  # still generating while connected
            steps = engine.steps
        assert wait_for(lambda: engine.num_running == 0)
        assert engine.steps - steps < 1999  # freed long before max_tokens
        assert metric(server, "vllm:num_requests_running", 'model_name="tiny"') == 0
