"""Write the final model in Hugging Face format where spec.output.location says.

LoRA adapters are merged into the base weights for the exported model (what a server loads as-is) and
also kept under ``adapter/``. A local or ``pvc://`` target is written to a sibling temporary directory
and renamed, so readers never see half a model; ``s3://`` is written locally and uploaded with checks.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase

from llmops_core import storage

# transformers 5 names its generic fast tokenizer "TokenizersBackend", a class 4.x lacks; 4.x's name for
# the same thing, PreTrainedTokenizerFast, still loads in 5.
PORTABLE_TOKENIZER = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def save_hf(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "merge_and_unload"):  # peft
        model.save_pretrained(out / "adapter")
        model = model.merge_and_unload()
    model.config.use_cache = True  # training turns the KV cache off; generation wants it back
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    tok_config = out / "tokenizer_config.json"
    if tok_config.is_file():
        conf = json.loads(tok_config.read_text())
        if conf.get("tokenizer_class") in PORTABLE_TOKENIZER:
            conf["tokenizer_class"] = PORTABLE_TOKENIZER[conf["tokenizer_class"]]
            tok_config.write_text(json.dumps(conf, indent=2, ensure_ascii=False) + "\n")
    gen = model.generation_config if model.generation_config is not None else GenerationConfig()
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.bos_token_id is None:
        gen.bos_token_id = tokenizer.bos_token_id
    gen.save_pretrained(out)


def export(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, location: str, cache_dir: Path | None
) -> str:
    """Save to ``location`` (dir, pvc:// or s3://); returns where it went."""
    loc = storage.parse(location)
    if loc.scheme == "s3":
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            save_hf(model, tokenizer, Path(tmp))
            storage.upload_dir(Path(tmp), location)
        return location
    dest = storage.resolve(location)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_hf(model, tokenizer, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return str(dest)
