"""OpenAI parameters, each with an effect or a 400: logprobs, echo, logit_bias, penalties, token-id
prompts, refused fields, model retrieval, and vLLM's extras (/version, /tokenize, token ids, usage)."""

from __future__ import annotations

import collections
import json
import math

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmops_serve.sampling import RowState, SamplingParams, choose
from tests.serve.test_api import client


def bad_request(fn, param: str, code: str | None = None) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as exc:
        fn()
    body = exc.value.body
    assert body["param"] == param, body
    if code:
        assert body["code"] == code
    return exc.value


def sse_chunks(server, body: dict, path: str = "/v1/completions") -> list[dict]:
    with httpx.stream("POST", server.url + path, json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        lines = [ln[6:] for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(ln) for ln in lines[:-1]]


@pytest.fixture(scope="module")
def hf(tiny_model):
    return AutoTokenizer.from_pretrained(tiny_model), AutoModelForCausalLM.from_pretrained(tiny_model).eval()


def test_completion_logprobs_are_the_models(server, hf):
    tok, model = hf
    r = client(server).completions.create(
        model="tiny", prompt="The quick brown", max_tokens=6, temperature=0, logprobs=3,
        extra_body={"ignore_eos": True},
    )  # fmt: skip
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    for chosen, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 3 and top[chosen] == value == max(top.values())  # greedy: the top one
    ids = tok("The quick brown", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        expected = torch.log_softmax(model(ids).logits[0, -1].float(), -1).max().item()
    assert math.isclose(lp.token_logprobs[0], expected, abs_tol=1e-4)


def test_chat_logprobs_and_limits(server):
    c = client(server)
    msgs = [{"role": "user", "content": "fox"}]
    r = c.chat.completions.create(
        model="tiny", messages=msgs, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(
        len(e.top_logprobs) == 2 and e.logprob <= 0 and e.bytes == list(e.token.encode()) for e in content
    )
    assert all(e.logprob == e.top_logprobs[0].logprob for e in content)  # greedy picks the top one
    plain = c.chat.completions.create(model="tiny", messages=msgs, max_tokens=5, temperature=0)
    assert plain.choices[0].logprobs is None
    bad_request(
        lambda: c.chat.completions.create(model="tiny", messages=msgs, logprobs=True, top_logprobs=30),
        "top_logprobs",
    )
    bad_request(
        lambda: c.chat.completions.create(model="tiny", messages=msgs, top_logprobs=2), "top_logprobs"
    )
    bad_request(lambda: c.completions.create(model="tiny", prompt="x", logprobs=21), "logprobs")


def test_echo_with_and_without_logprobs(server):
    c = client(server)
    r = c.completions.create(model="tiny", prompt="A stitch in", max_tokens=4, temperature=0, echo=True)
    plain = c.completions.create(model="tiny", prompt="A stitch in", max_tokens=4, temperature=0)
    assert r.choices[0].text == "A stitch in" + plain.choices[0].text
    r = c.completions.create(
        model="tiny", prompt="A stitch in", max_tokens=4, temperature=0, echo=True, logprobs=1
    )
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == r.usage.prompt_tokens + r.usage.completion_tokens
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v <= 0 for v in lp.token_logprobs[1:])
    chunks = sse_chunks(
        server, {"model": "tiny", "prompt": "A stitch in", "max_tokens": 4, "temperature": 0, "echo": True, "stream": True}
    )  # fmt: skip
    assert "".join(ch["choices"][0]["text"] for ch in chunks) == "A stitch in" + plain.choices[0].text


def test_logit_bias(server, hf):
    tok, _ = hf
    c = client(server)
    fox = tok("fox")["input_ids"][0]
    r = c.completions.create(
        model="tiny", prompt="The", max_tokens=5, temperature=0, logit_bias={str(fox): 100},
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )  # fmt: skip
    assert r.choices[0].model_extra["token_ids"] == [fox] * 5
    plain = c.completions.create(
        model="tiny", prompt="The", max_tokens=1, temperature=0, extra_body={"return_token_ids": True}
    )
    first = plain.choices[0].model_extra["token_ids"][0]
    banned = c.completions.create(
        model="tiny", prompt="The", max_tokens=1, temperature=0, logit_bias={str(first): -100},
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    assert banned.choices[0].model_extra["token_ids"][0] != first
    bad_request(lambda: c.completions.create(model="tiny", prompt="x", logit_bias={"5": 101}), "logit_bias")
    bad_request(lambda: c.completions.create(model="tiny", prompt="x", logit_bias={"99999": 1}), "logit_bias")
    bad_request(lambda: c.completions.create(model="tiny", prompt="x", logit_bias={"fox": 1}), "logit_bias")


def test_frequency_and_presence_penalties(server):
    c = client(server)
    kw = {"model": "tiny", "prompt": "The fox", "max_tokens": 60, "temperature": 0}
    extra = {"ignore_eos": True, "return_token_ids": True}

    def counts(**more) -> collections.Counter:
        ids = c.completions.create(**kw, **more, extra_body=extra).choices[0].model_extra["token_ids"]
        return collections.Counter(ids)

    plain, frequency = counts(), counts(frequency_penalty=2.0)
    assert max(frequency.values()) < max(plain.values())  # repeats are penalised per repeat
    assert counts(frequency_penalty=-2.0) != frequency  # negative values reward repeats
    bad_request(
        lambda: c.completions.create(model="tiny", prompt="x", frequency_penalty=2.5), "frequency_penalty"
    )
    bad_request(
        lambda: c.completions.create(model="tiny", prompt="x", presence_penalty=-3), "presence_penalty"
    )


def test_penalty_arithmetic():
    """OpenAI's definition: logit - frequency * count - presence * (count > 0), before sampling."""
    logits = torch.tensor([3.0, 2.5, 0.0])
    for params, expected in [
        (SamplingParams(1, temperature=0), 0),
        (SamplingParams(1, temperature=0, presence_penalty=0.6), 1),  # 3.0 - 0.6 < 2.5
        (SamplingParams(1, temperature=0, presence_penalty=0.4), 0),
        (SamplingParams(1, temperature=0, frequency_penalty=0.3), 1),  # seen twice: 3.0 - 0.6
        (SamplingParams(1, temperature=0, frequency_penalty=0.2), 0),
        (SamplingParams(1, temperature=0, logit_bias={2: 4.0}), 2),
    ]:
        row = RowState.create(params, 3, torch.device("cpu"))
        row.record(0)
        row.record(0)
        assert choose(logits, params, row) == expected, params


def test_stream_options_need_stream(server):
    c = client(server)
    bad_request(
        lambda: c.completions.create(model="tiny", prompt="x", stream_options={"include_usage": True}),
        "stream_options",
    )


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("response_format", {"type": "json_object"}, "/v1/chat/completions"),
        ("tools", [{"type": "function", "function": {"name": "f"}}], "/v1/chat/completions"),
        ("tool_choice", "required", "/v1/chat/completions"),
        ("audio", {"voice": "alloy"}, "/v1/chat/completions"),
        ("store", True, "/v1/chat/completions"),
        ("suffix", "end", "/v1/completions"),
        ("best_of", 3, "/v1/completions"),
        ("top_k", 5, "/v1/completions"),
        ("echo", True, "/v1/chat/completions"),
    ],
)
def test_unsupported_fields_refused(server, field, value, path):
    body = {"model": "tiny", "max_tokens": 2, field: value}
    body.update({"messages": [{"role": "user", "content": "x"}]} if "chat" in path else {"prompt": "x"})
    r = httpx.post(server.url + path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and err["code"] == "unsupported_parameter" and "support" in err["message"]


def test_off_values_of_refused_fields_accepted(server):
    c = client(server)
    msgs = [{"role": "user", "content": "x"}]
    r = c.chat.completions.create(
        model="tiny", messages=msgs, max_tokens=2, response_format={"type": "text"}, tools=[], store=False
    )
    assert r.choices[0].message.content is not None
    assert c.completions.create(model="tiny", prompt="x", max_tokens=2, n=2, best_of=2).choices[1].index == 1
    bad_request(
        lambda: c.chat.completions.create(
            model="tiny", max_tokens=2, messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        ),
        "messages.0.content",
    )  # fmt: skip


def test_token_id_prompts(server, hf):
    tok, _ = hf
    c = client(server)
    texts = ["The quick brown", "Kubernetes"]
    ids = [tok(t)["input_ids"] for t in texts]
    by_ids = c.completions.create(model="tiny", prompt=ids, max_tokens=8, temperature=0)
    by_text = c.completions.create(model="tiny", prompt=texts, max_tokens=8, temperature=0)
    assert [ch.text for ch in by_ids.choices] == [ch.text for ch in by_text.choices]
    assert len(by_ids.choices) == 2 and by_ids.usage.prompt_tokens == sum(map(len, ids))
    one = c.completions.create(model="tiny", prompt=ids[0], max_tokens=8, temperature=0)
    assert one.choices[0].text == by_text.choices[0].text
    err = bad_request(lambda: c.completions.create(model="tiny", prompt=[[1, 2], []]), "prompt")
    assert "token-id arrays" in err.message
    bad_request(lambda: c.completions.create(model="tiny", prompt=[[1, 10**6]]), "prompt")


def test_models_retrieve_and_version(server):
    c = client(server)
    m = c.models.retrieve("tiny")
    assert m.id == "tiny" and m.object == "model" and m.model_extra["max_model_len"] == 512
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4")
    v = httpx.get(server.url + "/version").json()
    assert set(v) == {"version"} and v["version"]


def test_tokenize_detokenize(server, hf):
    tok, _ = hf
    r = httpx.post(server.url + "/tokenize", json={"prompt": "Café fox", "return_token_strs": True}).json()
    assert r["tokens"] == tok("Café fox")["input_ids"] and r["count"] == len(r["tokens"])
    assert r["max_model_len"] == 512 and r["token_strs"] == tok.convert_ids_to_tokens(r["tokens"])
    back = httpx.post(server.url + "/detokenize", json={"model": "tiny", "tokens": r["tokens"]}).json()
    assert back == {"prompt": "Café fox"}
    msgs = [{"role": "user", "content": "Tell me about the fox"}]
    chat = httpx.post(server.url + "/tokenize", json={"messages": msgs}).json()
    r = client(server).chat.completions.create(model="tiny", messages=msgs, max_tokens=2)
    assert chat["count"] == r.usage.prompt_tokens
    assert (
        httpx.post(server.url + "/detokenize", json={"tokens": [10**7]}).json()["error"]["param"] == "tokens"
    )
    assert httpx.post(server.url + "/tokenize", json={"model": "nope", "prompt": "x"}).status_code == 404
    assert httpx.post(server.url + "/tokenize", json={}).status_code == 400


def test_return_token_ids(server, hf):
    tok, _ = hf
    body = {"model": "tiny", "prompt": "Once upon", "max_tokens": 12, "temperature": 0, "ignore_eos": True}
    r = httpx.post(server.url + "/v1/completions", json={**body, "return_token_ids": True}).json()
    choice = r["choices"][0]
    assert choice["prompt_token_ids"] == tok("Once upon")["input_ids"]
    assert len(choice["token_ids"]) == 12 and tok.decode(choice["token_ids"]) == choice["text"]
    chunks = sse_chunks(server, {**body, "return_token_ids": True, "stream": True})
    assert [t for ch in chunks for t in ch["choices"][0]["token_ids"]] == choice["token_ids"]
    assert chunks[0]["choices"][0]["prompt_token_ids"] == choice["prompt_token_ids"]
    plain = httpx.post(server.url + "/v1/completions", json=body).json()["choices"][0]
    assert "token_ids" not in plain and "prompt_token_ids" not in plain
    msgs = [{"role": "user", "content": "fox"}]
    chat = httpx.post(
        server.url + "/v1/chat/completions",
        json={"model": "tiny", "messages": msgs, "max_tokens": 3, "return_token_ids": True},
    ).json()
    tokenized = httpx.post(server.url + "/tokenize", json={"messages": msgs}).json()["tokens"]
    assert chat["prompt_token_ids"] == tokenized and len(chat["choices"][0]["token_ids"]) == 3


def test_continuous_usage_stats(server):
    body = {
        "model": "tiny", "prompt": "The fox", "max_tokens": 10, "temperature": 0, "ignore_eos": True,
        "stream": True, "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }  # fmt: skip
    chunks = sse_chunks(server, body)
    counts = [ch["usage"]["completion_tokens"] for ch in chunks]
    assert all(ch["usage"]["prompt_tokens"] == chunks[0]["usage"]["prompt_tokens"] for ch in chunks)
    assert counts == sorted(counts) and counts[-1] == 10 and chunks[-1]["choices"] == []
    body["stream_options"] = {"include_usage": True}
    chunks = sse_chunks(server, body)
    assert all("usage" not in ch for ch in chunks[:-1]) and chunks[-1]["usage"]["completion_tokens"] == 10
