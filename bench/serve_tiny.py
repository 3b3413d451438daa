"""Build a small, briefly trained Llama checkpoint for the server's tests and benchmark.

No weights can be downloaded, so we train a byte-level BPE tokenizer and a Llama from a config on a
little built-in text. A few dozen optimiser steps make greedy decoding confident (large logit margins),
so greedy comparisons between runs are meaningful rather than decided by near-ties of random weights.
"""

from __future__ import annotations

from pathlib import Path

TEXT = """\
The quick brown fox jumps over the lazy dog. A stitch in time saves nine.
Kubernetes schedules pods onto nodes; a deployment keeps replicas running.
The server batches many requests into one forward pass, so the processor stays busy.
Once upon a time there was a small model that learned to write short stories about foxes and dogs.
Every morning the fox ran through the forest, and every evening the dog slept by the fire.
Prices: 3 apples cost 1.50 euros, 7 pears cost 2.10 euros. Café, naïve, 東京, ünïcödé text appears too.
def add(a, b):
    return a + b
The cache keeps keys and values for every token, so each new token attends over the prefix once.
"""

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def bench_model(out: Path, hidden: int, layers: int, intermediate: int | None, train_steps: int) -> Path:
    """The serving benchmarks' model under `out`, built once per shape and reused by later runs."""
    model_dir = out / f"model-h{hidden}-l{layers}-i{intermediate}-s{train_steps}"
    if not (model_dir / "model.safetensors").exists():
        heads = max(4, hidden // 64)
        build_tiny_model(
            model_dir, hidden=hidden, layers=layers, heads=heads, intermediate=intermediate, steps=train_steps
        )
    return model_dir


def build_tiny_model(
    out: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    intermediate: int | None = None,
    vocab: int = 512,
    steps: int = 40,
    seed: int = 0,
    chat_template: bool = True,
) -> Path:
    """Write tokenizer + safetensors Llama to `out` and return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT] * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=intermediate or hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    ids = torch.tensor(fast(TEXT + "<|endoftext|>")["input_ids"])
    window = 64
    starts = list(range(0, max(1, len(ids) - window), 16))
    batch = torch.stack([ids[s : s + window] for s in starts if s + window <= len(ids)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
