"""One request never hurts another: bad seeds and temperatures, failures inside the engine, clients
that give up (streaming or not), and the queue gauges an autoscaler reads."""

from __future__ import annotations

import asyncio
import re

import httpx
import openai
import pytest

from llmops_serve import engine as engine_module
from tests.serve.conftest import live_server, wait_for
from tests.serve.test_api import PROMPTS, client, metric
from tests.serve.test_conformance import bad_request


@pytest.mark.parametrize("seed", [2**64, 2**63, -(2**63) - 1])
def test_seed_out_of_range_is_400(server, seed):
    bad_request(lambda: client(server).completions.create(model="tiny", prompt="x", seed=seed), "seed")


def test_extreme_seeds_in_range_work(server):
    c = client(server)
    for seed in (2**63 - 1, -(2**63)):  # n=2 samples with seed + 1: wraps, never overflows
        r = c.completions.create(model="tiny", prompt="The", max_tokens=3, temperature=1.0, seed=seed, n=2)
        assert len(r.choices) == 2 and r.usage.completion_tokens >= 2


def test_tiny_temperature_is_greedy(server):
    c = client(server)
    kw = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 20, "extra_body": {"ignore_eos": True}}
    greedy = c.completions.create(**kw, temperature=0).choices[0].text
    for t in (1e-300, 1e-9):
        assert c.completions.create(**kw, temperature=t).choices[0].text == greedy


async def _streams(server, bodies: list[dict]) -> list[str | dict]:
    """Run streams concurrently; each gives its text, or the error frame it received."""

    async def one(http: httpx.AsyncClient, body: dict) -> str | dict:
        text = ""
        async with http.stream("POST", server.url + "/v1/completions", json={**body, "stream": True}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    frame = httpx.Response(200, content=line[6:]).json()
                    if "error" in frame:
                        return frame["error"]
                    text += frame["choices"][0]["text"]
        return text

    async with httpx.AsyncClient(timeout=60) as http:
        return await asyncio.gather(*(one(http, b) for b in bodies))


def test_failure_inside_the_engine_stays_with_its_request(tiny_model, monkeypatch):
    """A request whose sampling (or prefill) raises gets an error; the requests batched with it don't."""
    real_choose, real_prompt_logprobs = engine_module.choose, engine_module.prompt_logprobs

    def choose(logits, params, row):
        if params.seed == 666:
            raise RuntimeError("probability tensor contains inf/nan")
        return real_choose(logits, params, row)

    def prompt_logprobs(logits, prompt, top):
        if top == 7:
            raise RuntimeError("Overflow when unpacking long long")
        return real_prompt_logprobs(logits, prompt, top)

    monkeypatch.setattr(engine_module, "choose", choose)
    monkeypatch.setattr(engine_module, "prompt_logprobs", prompt_logprobs)
    good = [
        {"model": "tiny", "prompt": p, "max_tokens": 40, "temperature": 0, "ignore_eos": True}
        for p in PROMPTS
    ]
    bad = [
        {"model": "tiny", "prompt": "The", "max_tokens": 40, "temperature": 1.5, "seed": 666},
        {"model": "tiny", "prompt": "The fox", "max_tokens": 40, "echo": True, "logprobs": 7},
    ]
    with live_server(tiny_model) as srv:
        alone = asyncio.run(_streams(srv, good))
        mixed = asyncio.run(_streams(srv, [*good[:4], *bad, *good[4:]]))
        assert mixed[:4] + mixed[6:] == alone
        assert all(isinstance(e, dict) and e["code"] == "engine_error" for e in mixed[4:6])
        with pytest.raises(openai.InternalServerError):  # non-streaming: a 500 in OpenAI's shape
            client(srv).completions.create(**{**bad[0], "stream": False})
        assert wait_for(lambda: srv.state.engine.num_running == 0)
        kw = {k: v for k, v in good[0].items() if k != "ignore_eos"}
        ok = client(srv).completions.create(**kw, extra_body={"ignore_eos": True})
        assert ok.choices[0].text == alone[0]  # and the engine serves on


def test_abandoned_non_streaming_requests_are_freed(tiny_model):
    """Clients that time out after 1 s free their rows: far fewer than 16 x 2000 tokens are generated."""
    body = {"model": "tiny", "prompt": "The", "max_tokens": 2000, "ignore_eos": True}
    with live_server(tiny_model, max_model_len=2048) as srv:

        async def abandon() -> None:
            async with httpx.AsyncClient(timeout=1.0) as http:
                calls = [http.post(srv.url + "/v1/completions", json=body) for _ in range(16)]
                results = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(r, httpx.TimeoutException) for r in results)

        asyncio.run(abandon())
        engine = srv.state.engine
        assert wait_for(lambda: engine.num_running == 0 and engine.num_waiting == 0, timeout=10)
        generated = metric(srv, "vllm:generation_tokens_total")
        assert generated < 16 * 2000 / 2, generated
        aborted = metric(srv, "vllm:request_success_total", 'finished_reason="abort"')
        assert aborted == 16


def test_waiting_gauge_follows_queued_streams_that_leave(tiny_model):
    body = {"model": "tiny", "prompt": "The", "max_tokens": 2000, "ignore_eos": True, "stream": True}
    with live_server(tiny_model, max_batch_size=1) as srv:

        def waiting() -> float:
            return metric(srv, "vllm:num_requests_waiting", 'model_name="tiny"')

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=60) as http:

                async def read(n: int) -> None:
                    async with http.stream("POST", srv.url + "/v1/completions", json=body) as r:
                        async for _ in r.aiter_lines():
                            pass

                running = asyncio.create_task(read(0))
                await asyncio.to_thread(wait_for, lambda: srv.state.engine.num_running == 1)
                queued = [asyncio.create_task(read(i)) for i in range(3)]
                assert await asyncio.to_thread(wait_for, lambda: waiting() == 3)
                for task in queued:
                    task.cancel()
                await asyncio.gather(*queued, return_exceptions=True)
                assert await asyncio.to_thread(wait_for, lambda: waiting() == 0, 3.0)
                assert srv.state.engine.num_running == 1  # the running stream is untouched
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)

        asyncio.run(scenario())
        assert wait_for(lambda: srv.state.engine.num_running == 0)
        assert metric(srv, "vllm:request_success_total", 'finished_reason="abort"') == 4


VLLM_SERIES = [
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:num_preemptions_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    'vllm:request_success_total{finished_reason="stop"',
    'vllm:request_success_total{finished_reason="length"',
    'vllm:request_success_total{finished_reason="abort"',
    "vllm:time_to_first_token_seconds_count",
    "vllm:inter_token_latency_seconds_count",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:request_queue_time_seconds_count",
    "vllm:request_prefill_time_seconds_count",
    "vllm:request_decode_time_seconds_count",
    "vllm:request_inference_time_seconds_count",
    "vllm:request_prompt_tokens_count",
    "vllm:request_generation_tokens_count",
    "vllm:iteration_tokens_total_count",
]


def test_every_series_exported_at_zero_from_the_start(tiny_model):
    with live_server(tiny_model) as srv:
        text = httpx.get(srv.url + "/metrics").text
        for name in VLLM_SERIES:
            labels = "" if "{" in name else "{"
            line = re.search(
                "^" + re.escape(name + labels) + r'[^}]*model_name="tiny"[^}]*\} (\S+)$', text, re.M
            )
            assert line and float(line.group(1)) == 0.0, name


def test_v1_request_metrics_move(server):
    iteration_sum = metric(server, "vllm:iteration_tokens_total_sum")
    before = {
        name: metric(server, name.split("{")[0], name.partition("{")[2].rstrip("{")) for name in VLLM_SERIES
    }
    r = client(server).completions.create(
        model="tiny",
        prompt="Kubernetes schedules",
        max_tokens=9,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    after = {
        name: metric(server, name.split("{")[0], name.partition("{")[2].rstrip("{")) for name in VLLM_SERIES
    }
    moved = {k: after[k] - before[k] for k in VLLM_SERIES}
    assert moved['vllm:request_success_total{finished_reason="length"'] == 1
    assert moved['vllm:request_success_total{finished_reason="stop"'] == 0
    for name in VLLM_SERIES[9:18]:
        assert moved[name] == (8 if "inter_token" in name else 1), name
    assert moved["vllm:iteration_tokens_total_count"] == 9  # a prefill step, then 8 decode steps
    assert metric(server, "vllm:iteration_tokens_total_sum") - iteration_sum == r.usage.prompt_tokens + 8
    sums = {
        n: metric(server, n) for n in ("vllm:request_prompt_tokens_sum", "vllm:request_generation_tokens_sum")
    }
    assert (
        sums["vllm:request_generation_tokens_sum"] >= 9
        and sums["vllm:request_prompt_tokens_sum"] >= r.usage.prompt_tokens
    )
    assert after["vllm:num_preemptions_total"] == 0


def test_kv_cache_usage_while_running(tiny_model):
    body = {"model": "tiny", "prompt": "The", "max_tokens": 1000, "ignore_eos": True, "stream": True}
    with live_server(tiny_model, max_batch_size=2, max_model_len=1024) as srv:
        with httpx.stream("POST", srv.url + "/v1/completions", json=body) as r:
            lines = r.iter_lines()
            while not next(lines).startswith("data: {"):
                pass
            usage = metric(srv, "vllm:kv_cache_usage_perc", 'model_name="tiny"')
            assert 0 < usage < 1  # one row of two, well under max_model_len
        assert wait_for(lambda: metric(srv, "vllm:kv_cache_usage_perc", 'model_name="tiny"') == 0)


def test_failed_batched_prefill_retries_each_prompt_alone(tiny_model):
    """A prompt whose prefill raises fails alone; the prompts admitted with it still run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops_serve.engine import Engine, Sequence
    from llmops_serve.sampling import SamplingParams

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    poison = tok("The fox")["input_ids"][-1]
    real_forward = model.forward

    def forward(*args, input_ids, **kw):
        if input_ids.shape[1] > 1 and (input_ids == poison).any():
            raise RuntimeError("CUDA out of memory")
        return real_forward(*args, input_ids=input_ids, **kw)

    model.forward = forward
    loop = asyncio.new_event_loop()

    def run(prompts: list[str]) -> list[Sequence]:
        engine = Engine(model, tok, max_batch_size=8)
        params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
        seqs = [Sequence(tok(p)["input_ids"], params, loop, asyncio.Queue()) for p in prompts]
        engine.submit(seqs)
        while engine.num_running or engine.num_waiting:
            engine.step()
        return seqs

    alone = [run([p])[0].output_ids for p in ("The quick brown", "Kubernetes")]
    seqs = run(["The quick brown", "The fox", "Kubernetes"])
    assert [s.output_ids for s in (seqs[0], seqs[2])] == alone
    assert seqs[1].finished and seqs[1].output_ids == []
    loop.run_until_complete(asyncio.sleep(0))  # deliver the engine's events
    event = seqs[1].queue.get_nowait()
    assert event.finish_reason == "error" and "out of memory" in event.error
    loop.close()
