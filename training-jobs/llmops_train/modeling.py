"""Models: a preset Llama built from scratch, or a Hugging Face causal LM to fine-tune, optionally with LoRA."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from llmops_core.api.presets import PRESETS

from .config import InputError


def check_base_dir(path: Path, seq_len: int) -> None:
    """Fail fast on a missing model or a sequence longer than it allows, reading only config.json."""
    cfg = path / "config.json"
    if not cfg.is_file():
        raise InputError(f"model {path} not found (no config.json there)")
    limit = json.loads(cfg.read_text()).get("max_position_embeddings")
    if limit and seq_len > limit:
        raise InputError(f"sequenceLength {seq_len} exceeds the model's max_position_embeddings {limit}")


def build_preset(name: str, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """Initialise a preset from ``seed`` so every rank (and every restart) starts from the same weights."""
    kwargs = PRESETS[name].llama_config() | {"vocab_size": len(tokenizer)}
    config = LlamaConfig(
        **kwargs,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_base(path: Path, lora=None) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if lora is None:
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)
