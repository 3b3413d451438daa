"""Pieces without a server: settings precedence, incremental detokenizer, stop strings, int8, Dockerfile."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmops_serve import loader
from llmops_serve.detok import IncrementalDetokenizer, StopChecker
from llmops_serve.kvcache import GrowingLayer
from llmops_serve.packed_linear import PackedLinear, pack_linears
from llmops_serve.settings import parse_args

ROOT = Path(__file__).resolve().parents[2]


def test_settings_env_then_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOPS_MODEL", "pvc://models/tiny")
    monkeypatch.setenv("LLMOPS_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("LLMOPS_QUANTIZE", "int8")
    monkeypatch.setenv("LLMOPS_API_KEYS", "a, b")
    monkeypatch.setenv("LLMOPS_LOG_JSON", "true")
    (tmp_path / "k").write_text("c\n# comment\n\n")
    s = parse_args(["--max-batch-size", "4", "--api-key-file", str(tmp_path / "k"), "--port", "9000"])
    assert (s.model, s.max_batch_size, s.quantize, s.port, s.log_json) == (
        "pvc://models/tiny",
        4,
        "int8",
        9000,
        True,
    )
    assert s.keys() == ["a", "b", "c"]
    assert s.name == "pvc://models/tiny"
    with pytest.raises(ValueError):
        parse_args(["--model", "x", "--quantize", "int4"])
    flags = [
        "--model", "m", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "n",
        "--max-batch-size", "16",
        "--max-queue", "256", "--max-model-len", "64", "--max-tokens-cap", "10", "--max-prompt-tokens", "20",
        "--quantize", "none", "--dtype", "auto", "--drain-timeout", "30", "--request-timeout", "600",
        "--cache-size", "1024", "--log-json",
    ]  # fmt: skip
    assert parse_args(flags).max_prompt_tokens == 20  # the operator's contract, flag for flag


def test_incremental_detokenizer_multibyte(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    text = "Café naïve 東京 ünïcödé, 3 apples 🦊!"
    ids = tok(text)["input_ids"]
    d = IncrementalDetokenizer(tok)
    deltas = [d.add(i) for i in ids]
    assert "".join(deltas) + d.flush() == text
    assert not any("\ufffd" in x for x in deltas)
    assert any(x == "" for x in deltas)  # some tokens were partial characters, held back


def test_stop_checker_holds_back_prefixes():
    s = StopChecker(["STOP", "\n\n"])
    assert s.feed("hello S") == ("hello ", False)
    assert s.feed("TO") == ("", False)
    assert s.feed("P and more") == ("", True)
    assert s.feed("later") == ("", True)
    s = StopChecker(["STOP"])
    assert s.feed("ST") == ("", False)
    assert s.feed("ale", final=True) == ("STale", False)


def test_int8_quantization_quality(tiny_model):
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    q = loader.quantize_int8(model)
    assert isinstance(q.model.layers[0].mlp.down_proj, torch.ao.nn.quantized.dynamic.Linear)
    assert loader.top1_agreement(model, q, tok) >= 0.8


def test_dockerfile_paths_and_entrypoint():
    text = (ROOT / "Dockerfile.serve").read_text()
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)$", text, re.M)
    assert copies
    for line in copies:
        for src in line.split()[:-1]:
            assert (ROOT / src).exists(), src
    assert 'ENTRYPOINT ["python", "-m", "llmops_serve"]' in text
    assert re.search(r"^USER 10001", text, re.M) and "EXPOSE 8000" in text and "HEALTHCHECK" in text
    assert ".[serve,aws]" in text or ".[aws,serve]" in text
    env = {"PYTHONPATH": str(ROOT / "inference-service")}
    out = subprocess.run(
        [sys.executable, "-m", "llmops_serve", "--help"], env=env, capture_output=True, timeout=120
    )
    assert out.returncode == 0 and b"--max-batch-size" in out.stdout


def test_model_locations_pvc_and_s3(tiny_model, tmp_path, monkeypatch):
    """pvc:// resolves under $LLMOPS_PVC_ROOT; s3:// is downloaded (moto) into the cache dir and loads."""
    import boto3
    from moto import mock_aws

    monkeypatch.setenv("LLMOPS_PVC_ROOT", str(tiny_model.parent))
    assert loader.resolve_location(f"pvc://{tiny_model.name}") == tiny_model
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        for f in tiny_model.iterdir():
            s3.upload_file(str(f), "models", f"tiny/{f.name}")
        model, tok = loader.load("s3://models/tiny", cache_dir=tmp_path / "cache")
    assert (tmp_path / "cache" / "s3" / "models" / "tiny" / "model.safetensors").is_file()
    assert tok("fox")["input_ids"] and model.config.hidden_size == 64


def test_growing_kv_layer_matches_concatenation():
    torch.manual_seed(0)
    k, v = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    layer = GrowingLayer(k, v, spare=2)
    for _ in range(9):  # past the spare capacity twice
        nk, nv = torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)
        keys, values = layer.update(nk, nv)
        k, v = torch.cat([k, nk], 2), torch.cat([v, nv], 2)
        assert torch.equal(keys, k) and torch.equal(values, v)
    layer.batch_select_indices(torch.tensor([0, 2]))
    assert torch.equal(layer.keys, k[[0, 2]]) and layer.get_seq_length() == 14
    keys, _ = layer.update(torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert torch.equal(keys[:, :, :14], k[[0, 2]]) and keys.shape[2] == 15


@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_matches_linear(bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 80, bias=bias)
    packed = PackedLinear(linear, batch_hint=16)
    with torch.inference_mode():
        for shape in [(1, 48), (16, 48), (3, 7, 48)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(packed(x), linear(x), rtol=1e-5, atol=1e-5)


def test_pack_linears_keeps_the_head_and_greedy_tokens(tiny_model):
    """Every decoder linear is packed, the output head is not, and greedy generation is unchanged."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    packed = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    assert pack_linears(packed) == 7 * plain.config.num_hidden_layers
    assert type(packed.get_output_embeddings()) is torch.nn.Linear
    assert not any(type(m) is torch.nn.Linear for m in packed.model.modules())
    ids = torch.tensor([tok("The fox ran through the forest")["input_ids"]])
    kw = {"max_new_tokens": 40, "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    assert packed.generate(ids, **kw).tolist() == plain.generate(ids, **kw).tolist()
    assert pack_linears(loader.quantize_int8(plain)) == 0  # int8 keeps its own kernels


def test_engine_token_budget_and_batch_limit(tiny_model):
    """Admission stops at --max-tokens-in-flight and --max-batch-size; waiting rows join as others leave."""
    import asyncio

    from llmops_serve.engine import Engine, SamplingParams, Sequence

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    engine = Engine(model, tok, max_batch_size=3, max_tokens_in_flight=70)
    loop = asyncio.new_event_loop()
    params = [SamplingParams(max_tokens=n, temperature=0, ignore_eos=True) for n in (30, 30, 5, 5)]
    seqs = [Sequence(tok("The fox")["input_ids"], p, loop, asyncio.Queue()) for p in params]
    engine.submit(seqs)
    engine.step()
    assert (engine.num_running, engine.num_waiting) == (2, 2)  # 2 x (2 + 30) = 64; a third would exceed 70
    while not all(s.finished for s in seqs[:2]):
        assert engine.num_waiting == 2  # no room until they leave
        engine.step()
    engine.step()
    assert engine.num_waiting == 0 and engine.num_running == 2
    while engine.num_running:
        engine.step()
    assert [len(s.output_ids) for s in seqs] == [30, 30, 5, 5]
    loop.close()


def test_prefill_first_unless_the_prefill_budget_splits_it(tiny_model):
    """A step that admits newcomers runs only their prefill (running rows take their next token in
    the step after, together with them); when the prefill budget splits the newcomers, or none of
    them joins the batch, the running rows decode in the same step."""
    import asyncio

    from llmops_serve.engine import Engine, SamplingParams, Sequence

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = tok("The fox")["input_ids"]
    engine = Engine(model, tok, max_batch_size=8, max_prefill_tokens=2 * len(ids))
    loop = asyncio.new_event_loop()

    def seqs(k: int, max_tokens: int = 20) -> list[Sequence]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
        return [Sequence(list(ids), params, loop, asyncio.Queue()) for _ in range(k)]

    def tokens(group: list[Sequence]) -> list[int]:
        return [len(s.output_ids) for s in group]

    a = seqs(1)
    engine.submit(a)
    engine.step()
    assert tokens(a) == [1]  # prefill only
    engine.step()
    assert tokens(a) == [2]  # decode
    b = seqs(2)
    engine.submit(b)
    engine.step()
    assert tokens(a) == [2] and tokens(b) == [1, 1]  # the newcomers' prefill alone: a waits
    engine.step()
    assert tokens(a + b) == [3, 2, 2]  # one decode for all
    c = seqs(3)  # 3 prompts: over the budget of 2, so prefilled in two parts
    engine.submit(c)
    engine.step()
    assert tokens(a + b + c) == [4, 3, 3, 2, 2, 0]  # a part, then one decode for all running
    engine.step()
    assert tokens(a + b + c) == [4, 3, 3, 2, 2, 1]  # the last part fits whole: prefill only
    one = seqs(2, max_tokens=1)  # done on their first token: they never join, so no one waits for them
    engine.submit(one)
    engine.step()
    assert all(s.finished for s in one) and tokens(a + b + c) == [5, 4, 4, 3, 3, 2]
    loop.close()


def test_a_burst_is_prefilled_in_chunks_each_sent_before_the_next(tiny_model):
    """On CPU newcomers are prefilled ``prefill_chunk`` tokens at a time; each chunk's first tokens
    are handed to the event loop before the next chunk's forward, all before the first decode, and
    the tokens are those of one forward for the whole burst."""
    import asyncio

    from llmops_serve.engine import CPU_PREFILL_CHUNK, Engine, SamplingParams, Sequence

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    loop = asyncio.new_event_loop()

    def burst(texts: list[str]) -> list[Sequence]:
        params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)
        return [Sequence(tok(t)["input_ids"], params, loop, asyncio.Queue()) for t in texts]

    def spied(engine: Engine) -> list[tuple[str, int]]:
        order: list[tuple[str, int]] = []
        prefill, flush = engine._prefill, engine._flush

        def spy_prefill(group):
            order.append(("prefill", len(group)))
            prefill(group)

        def spy_flush():
            order.append(("flush", sum(len(items) for items in engine._outbox.values())))
            flush()

        engine._prefill, engine._flush = spy_prefill, spy_flush
        return order

    n = len(tok("The fox")["input_ids"])
    for chunk, expected in (
        (2 * n, [("prefill", 2), ("flush", 2), ("prefill", 2), ("flush", 2), ("prefill", 1), ("flush", 1)]),
        (100 * n, [("prefill", 5), ("flush", 5)]),
    ):
        engine = Engine(model, tok, max_batch_size=8, prefill_chunk=chunk)
        order, seqs = spied(engine), burst(["The fox"] * 5)
        engine.submit(seqs)
        engine.step()
        assert [len(s.output_ids) for s in seqs] == [1] * 5 and order == expected  # prefill only

    outputs = []
    for chunk in (1, 1000):  # one prompt per forward, and all in one (left-padded)
        engine = Engine(model, tok, max_batch_size=8, prefill_chunk=chunk)
        seqs = burst(["The fox", "A quick brown fox jumps", "Hello", "One two three four five six", "Why"])
        engine.submit(seqs)
        while engine.waiting or engine.running:
            engine.step()
        outputs.append([s.output_ids for s in seqs])
    assert outputs[0] == outputs[1] and all(len(o) == 6 for o in outputs[0])
    assert Engine(model, tok).prefill_chunk == CPU_PREFILL_CHUNK  # the CPU default
    loop.close()


def test_small_decode_steps_run_on_one_thread_with_the_same_tokens(tiny_model):
    """A decode step under the multiply-add threshold runs on one intra-op thread (the engine's
    SERIAL_DECODE_MACS); bigger batches and prefills keep every thread; the tokens are the same."""
    import asyncio

    import torch

    from llmops_serve.engine import Engine, SamplingParams, Sequence

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    macs = sum(m.in_features * m.out_features for m in model.modules() if hasattr(m, "out_features"))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    outputs = {}
    try:
        for limit in (0, 2 * macs):  # 0: never serial; 2 rows' worth: serial up to 2 rows
            engine = Engine(model, tok, max_batch_size=4, serial_decode_macs=limit)
            assert engine.serial_rows == (2 if limit else 0)
            seen: list[tuple[int, int]] = []
            forward = engine._decode_forward

            def spy(ids, positions, forward=forward, seen=seen):
                seen.append((len(ids), torch.get_num_threads()))
                return forward(ids, positions)

            engine._decode_forward = spy
            loop = asyncio.new_event_loop()
            seqs = [
                Sequence(
                    tok(p)["input_ids"],
                    SamplingParams(max_tokens=n, temperature=0, ignore_eos=True),
                    loop,
                    asyncio.Queue(),
                )
                for p, n in (("The fox", 6), ("A dog", 6), ("One", 3))
            ]
            engine.submit(seqs)
            while engine.num_running or engine.num_waiting:
                engine.step()
            loop.close()
            outputs[limit] = [s.output_ids for s in seqs]
            assert torch.get_num_threads() == 2  # restored after every step
            want = {rows: 1 if rows <= engine.serial_rows else 2 for rows, _ in seen}
            assert dict(seen) == want and {3, 2} <= set(want), seen
    finally:
        torch.set_num_threads(before)
    assert outputs[0] == outputs[2 * macs]


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x"},
        {"messages": [{"role": "user", "content": "x"}]},
        {"prompt": "x", "stream_options": {"include_usage": True, "continuous_usage_stats": True}},
        {"prompt": "x", "logprobs": 0},
        {"prompt": "x", "return_token_ids": True},
        {"messages": [{"role": "user", "content": "x"}], "logprobs": True},
    ],
    ids=["completion", "chat", "continuous-usage", "logprobs-0", "token-ids", "chat-logprobs"],
)
def test_stream_frames_are_the_chunks_json(body):
    """A streamed frame from the per-choice template is byte for byte the chunk model's dump, for
    texts JSON must escape, on both endpoints and whatever the request asks to include."""
    import asyncio
    from types import SimpleNamespace

    from llmops_serve.engine import Event
    from llmops_serve.generation import Job
    from llmops_serve.protocol import ChatCompletionRequest, CompletionRequest
    from llmops_serve.sampling import Logprob
    from llmops_serve.streaming import _Chunks, sse

    kind = ChatCompletionRequest if "messages" in body else CompletionRequest
    req = kind.model_validate({"model": "m", "stream": True, "n": 2, **body})
    state = SimpleNamespace(settings=SimpleNamespace(name="m"), token_text=lambda t: f"<{t}>")
    job = Job(state, req, [[5, 6]], [None], [None, None], asyncio.Queue(), 0.0, "cmpl-1", created=7)
    texts = [
        "Hello",
        ' "quoted" \\ back',
        "line\nbreak\ttab\r",
        "\x00\x1f\x7f",
        "東京 ünï 🦊",
        "\u2028\u2029",
        "</script>",
    ]
    fast, slow = _Chunks(job), _Chunks(job)
    frames = 0
    for i, text in enumerate(["first", *texts]):
        for index in (0, 1):
            lp = [Logprob(token_id=5, logprob=-0.5, top=[])] if req.logprobs is not None else None
            ev = Event(text=text, index=index, token_ids=[5 + i], logprobs=lp)
            expected = slow.chunk(ev)
            assert fast.frame(ev) == (None if expected is None else sse(expected))
            frames += expected is not None
    assert frames == 2 * (len(texts) + 1)
    assert bool(fast.templates) == (fast.plain and not req.continuous_usage())  # the template was used
