"""Fused Llama projections and the lean decode step: the same logits and greedy tokens as the plain model."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from llmops_serve import loader
from llmops_serve.engine import Engine, SamplingParams, Sequence
from llmops_serve.kvcache import growing_cache
from llmops_serve.llama_fused import FusedLlamaAttention, LeanLlama, fuse_llama, lean_for
from llmops_serve.packed_linear import pack_linears

PROMPTS = ["The quick brown fox", "Kubernetes schedules pods onto nodes; a", "Once", "def add(a, b):"]


def _pair(config: LlamaConfig) -> tuple[LlamaForCausalLM, LlamaForCausalLM]:
    torch.manual_seed(0)
    plain = LlamaForCausalLM(config).eval()
    fused = LlamaForCausalLM(config).eval()
    fused.load_state_dict(plain.state_dict())
    assert fuse_llama(fused)
    return plain, fused


def _config(**kw) -> LlamaConfig:
    base = {
        "vocab_size": 97,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 256,
    }
    return LlamaConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "kw",
    [{}, {"num_key_value_heads": 2}, {"attention_bias": True, "mlp_bias": True}],
    ids=["mha", "gqa", "bias"],
)
def test_fused_model_and_lean_forward_match_the_plain_model(kw):
    """On a left-padded batch (rows of different lengths, positions past the rotary table's first
    size): the fused model's own forward, LeanLlama's prefill (logits and keys/values of every real
    token) and then its decode steps give the plain model's logits within fp32 rounding."""
    plain, fused = _pair(_config(**kw))
    torch.manual_seed(1)
    lengths = [5, 9, 2]
    width = max(lengths)
    ids = torch.randint(1, 97, (3, width))
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, width - n :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    lean = LeanLlama(fused, positions=4)  # tiny table: it must grow on the way
    real = mask.bool()
    with torch.inference_mode():
        a = plain(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        b = fused(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        torch.testing.assert_close(b.logits, a.logits, rtol=1e-5, atol=1e-5)
        logits, kv = lean.prefill(ids, positions, mask, all_logits=True)
        torch.testing.assert_close(logits[real], a.logits[real], rtol=1e-5, atol=1e-5)
        last, _ = lean.prefill(ids, positions, mask, all_logits=False)
        torch.testing.assert_close(last[:, -1], a.logits[:, -1], rtol=1e-5, atol=1e-5)
        for (k, v), layer in zip(kv, a.past_key_values.layers, strict=True):
            for mine, theirs in ((k, layer.keys), (v, layer.values)):
                torch.testing.assert_close(mine.transpose(1, 2)[real], theirs.transpose(1, 2)[real])
        cache_a = a.past_key_values
        cache_b = growing_cache(kv)
        lens = torch.tensor(lengths)
        for _ in range(6):
            nxt = a.logits[:, -1].argmax(-1)
            mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
            a = plain(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=lens[:, None],
                past_key_values=cache_a,
                use_cache=True,
            )
            torch.testing.assert_close(
                lean.decode(nxt, lens, mask.bool(), cache_b), a.logits[:, -1], rtol=1e-5, atol=1e-5
            )
            lens = lens + 1
    assert lean.cos.shape[0] > int(lens.max())


def test_lean_prefill_of_one_unpadded_prompt_matches_the_plain_model():
    plain, fused = _pair(_config(num_key_value_heads=2))
    ids = torch.randint(1, 97, (1, 11), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        logits, _ = LeanLlama(fused).prefill(ids, torch.arange(11)[None], None, all_logits=True)
        torch.testing.assert_close(logits, plain(input_ids=ids).logits, rtol=1e-5, atol=1e-5)


def test_fuse_llama_refuses_what_it_does_not_cover(tiny_model):
    assert not fuse_llama(torch.nn.Linear(2, 2))
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    assert not fuse_llama(loader.quantize_int8(plain))  # int8 linears keep their own kernels
    dynamic = LlamaForCausalLM(_config(rope_parameters={"rope_type": "dynamic", "factor": 2.0}))
    assert not fuse_llama(dynamic)  # its cos/sin depend on the length seen so far
    assert lean_for(plain) is None  # an unfused model keeps transformers' forward


def test_engine_on_fused_packed_model_equals_generate(tiny_model):
    """The server's path (fused, packed, LeanLlama) streams exactly what generate() gives on the
    unmodified model, for prompts of different lengths decoded together."""
    tok = AutoTokenizer.from_pretrained(tiny_model)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    model, _ = loader.load(str(tiny_model))
    assert isinstance(model.model.layers[0].self_attn, FusedLlamaAttention)
    assert pack_linears(model) == 0  # already packed: no plain nn.Linear left in the decoder
    engine = Engine(model, tok, max_batch_size=len(PROMPTS))
    assert engine.lean is not None
    loop = asyncio.new_event_loop()
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    seqs = [Sequence(tok(p)["input_ids"], params, loop, asyncio.Queue()) for p in PROMPTS]
    engine.submit(seqs[:2])
    engine.step()  # the other two join a running batch (cache merge, padding)
    engine.submit(seqs[2:])
    while engine.num_running or engine.num_waiting:
        engine.step()
    loop.close()
    kw = {"max_new_tokens": 40, "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    with torch.inference_mode():
        for prompt, seq in zip(PROMPTS, seqs, strict=True):
            ids = torch.tensor([tok(prompt)["input_ids"]])
            assert seq.output_ids == plain.generate(ids, **kw)[0, ids.shape[1] :].tolist(), prompt
