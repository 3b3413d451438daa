"""Admission control and errors: every bad request gets a clean OpenAI-shaped 4xx."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import openai
import pytest

from tests.serve.conftest import live_server, wait_for


def post(server, body, path="/v1/completions", **kw) -> httpx.Response:
    return httpx.post(
        server.url + path,
        timeout=120,  # two 2000-token requests in a row on a busy shared machine
        **({"json": body} if not isinstance(body, bytes) else {"content": body}),
        **kw,
    )


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code
    return err


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny", "prompt": "hi", "max_tokens": -1}, "max_tokens"),
        ({"model": "tiny", "prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"model": "tiny", "prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
        ({"model": "tiny", "prompt": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "tiny", "prompt": "hi", "temperature": -0.5}, "temperature"),
        ({"model": "tiny", "prompt": "hi", "n": 0}, "n"),
        ({"model": "tiny", "prompt": "hi", "stream": "yes"}, "stream"),
        ({"model": "tiny", "prompt": 42}, "prompt"),
        ({"model": "tiny"}, "prompt"),
        ({"prompt": "hi"}, "model"),
    ],
)
def test_bad_fields_400(server, body, param):
    err = assert_error(post(server, body), 400)
    assert err["param"].split(".")[0] == param


def test_malformed_json_and_non_object(server):
    assert_error(post(server, b'{"model": "tiny", "prompt": '), 400, "invalid_json")
    assert_error(post(server, b"[1, 2]"), 400, "invalid_json")
    assert_error(post(server, {"model": "tiny", "messages": "hello"}, "/v1/chat/completions"), 400)
    assert_error(
        post(
            server,
            {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]},
            "/v1/chat/completions",
        ),
        400,
    )


def test_max_tokens_limits(server):
    assert_error(post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 10**12}), 400)
    err = assert_error(post(server, {"model": "tiny", "prompt": "hi", "max_tokens": 401}), 400)
    assert err["param"] == "max_tokens"  # over --max-tokens-cap 400


def test_prompt_too_long(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        c.completions.create(model="tiny", prompt="fox " * 600, max_tokens=5)
    assert exc.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="tiny", prompt="fox " * 200, max_tokens=400)  # prompt + max_tokens > 512
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="tiny", prompt=[10**9], max_tokens=5)


def test_unknown_model_and_route(server):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as exc:
        c.completions.create(model="gpt-4", prompt="hi", max_tokens=5)
    assert exc.value.code == "model_not_found"
    assert_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert httpx.get(server.url + "/v1/completions").status_code == 405


def test_limits_server(tiny_model, caplog):
    """Auth, body size, a full queue (429 + Retry-After), keys never logged."""
    key = "sk-test-SECRET-9f8e7d"
    caplog.set_level(logging.DEBUG, logger="llmops_serve")
    with live_server(
        tiny_model,
        api_keys=f"other-key, {key}",
        max_batch_size=1,
        max_queue=1,
        max_body_bytes=2048,
    ) as srv:
        ok = openai.OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0)
        assert ok.completions.create(model="tiny", prompt="The", max_tokens=3).usage.completion_tokens >= 1
        for bad in ("wrong", key + "x", ""):
            c = openai.OpenAI(base_url=srv.url + "/v1", api_key=bad or "-", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                c.models.list()
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/health").status_code == 200  # probes need no key

        auth = {"Authorization": f"Bearer {key}"}
        assert_error(post(srv, {"model": "tiny", "prompt": "x" * 4000}, headers=auth), 413)

        # One long request runs, one waits, the third finds the queue full.
        long = {"model": "tiny", "prompt": "The", "max_tokens": 2000, "ignore_eos": True, "temperature": 0}
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: results.append(post(srv, long, headers=auth))) for _ in range(2)
        ]
        for t in threads:
            t.start()
            time.sleep(0.3)
        engine = srv.state.engine
        for _ in range(100):
            if engine.num_running == 1 and engine.num_waiting == 1:
                break
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as exc:
            ok.completions.create(model="tiny", prompt="The", max_tokens=3)
        assert exc.value.response.headers["retry-after"] == "1"
        for t in threads:
            t.join(timeout=120)
        assert [r.status_code for r in results] == [200, 200]
        assert wait_for(lambda: engine.num_running == engine.num_waiting == 0)
    logged = caplog.text
    assert "Bearer" not in logged and key not in logged
    assert "POST /v1/completions 429" in logged  # the access log did run


def test_request_timeout_frees_slot(tiny_model):
    with live_server(tiny_model, request_timeout=0.3) as srv:
        long = {"model": "tiny", "prompt": "The", "max_tokens": 2000, "ignore_eos": True}
        assert_error(post(srv, long), 504, "timeout")
        engine = srv.state.engine
        assert wait_for(lambda: engine.num_running == 0)
        assert post(srv, {"model": "tiny", "prompt": "The", "max_tokens": 3}).status_code == 200
        # Mid-stream, the error is a data payload with an "error" key (the openai client raises on it).
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
        stream = c.completions.create(
            model="tiny", prompt="The", max_tokens=2000, stream=True, extra_body={"ignore_eos": True}
        )
        with pytest.raises(openai.APIError, match="timed out"):
            for _ in stream:
                pass
        assert wait_for(lambda: engine.num_running == 0)
