"""Find, load and optionally quantize the model a server runs.

LOCATION is a local directory or a `pvc://` / `s3://` URI, resolved by the shared `llmops_core.storage`.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from llmops_serve.llama_fused import fuse_llama
from llmops_serve.packed_linear import pack_linears

log = logging.getLogger("llmops_serve.loader")

# Used when the tokenizer ships no chat template (documented in docs/serve.md).
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
PROBE = "The quick brown fox jumps over the lazy dog. Kubernetes schedules pods onto nodes."


def resolve_location(location: str, cache_dir: Path | None = None, pvc_root: Path | None = None) -> Path:
    """Local path for LOCATION: as is, under the PVC root for pvc://, downloaded for s3://."""
    from llmops_core import storage

    loc = storage.parse(location)
    if loc.scheme == "pvc" and pvc_root is not None:
        return pvc_root / loc.bucket / loc.key
    return storage.resolve(location, cache_dir=cache_dir)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on GPUs that support it (else fp16), fp32 on CPU where half precision is slow."""
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of every nn.Linear: per-channel int8 weights, activations per batch.

    torch.ao's eager quantization warns that it is deprecated in favour of torchao; it is still the
    only CPU int8 path shipped with torch itself, so we use it and silence the warning.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def top1_agreement(reference: Any, candidate: Any, tokenizer: Any, text: str = PROBE) -> float:
    """Share of positions where both models predict the same next token: a cheap quality check."""
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.inference_mode():
        a = reference(input_ids=ids).logits.argmax(-1)
        b = candidate(input_ids=ids).logits.argmax(-1)
    return float((a == b).float().mean())


def load(
    location: str,
    *,
    dtype: str = "auto",
    quantize: str = "none",
    cache_dir: Path | None = None,
    pvc_root: Path | None = None,
):
    """Return (model, tokenizer) ready for inference."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_location(location, cache_dir, pvc_root)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    torch_dtype = pick_dtype(dtype, device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device).eval()
    if quantize == "int8":
        if device.type != "cpu":
            raise ValueError("--quantize int8 is CPU dynamic quantization; use --dtype bfloat16 on GPUs")
        quantized = quantize_int8(model)
        agreement = top1_agreement(model, quantized, tokenizer)
        log.info("int8 quality check: top-1 agreement with fp32 on a probe text = %.1f%%", 100 * agreement)
        model = quantized
    else:
        fuse_llama(model)  # fp32 CPU Llamas: q/k/v and gate/up as one linear each, then packed
        pack_linears(model)
    log.info(
        "loaded %s from %s (%s, %s, quantize=%s)", type(model).__name__, path, device, torch_dtype, quantize
    )
    return model, tokenizer
