"""Named model architectures for pre-training from scratch (Llama-style decoders).

One table for the API (which names are valid) and the trainer (which config to build). ``tiny`` runs in seconds on a laptop CPU; the
others follow well-known shapes (GPT-2 small, GPT-2 medium, TinyLlama 1.1B).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int

    def llama_config(self) -> dict[str, int | bool]:
        """Keyword arguments for ``transformers.LlamaConfig``."""
        return {**asdict(self), "tie_word_embeddings": self.hidden_size < 1024}


PRESETS: dict[str, Preset] = {
    "tiny": Preset(64, 2, 4, 4, 256, 1024, 512),
    "small": Preset(256, 4, 4, 4, 1024, 8192, 1024),
    "125m": Preset(768, 12, 12, 12, 3072, 32000, 2048),
    "350m": Preset(1024, 24, 16, 16, 2816, 32000, 2048),
    "1b": Preset(2048, 22, 32, 4, 5632, 32000, 2048),
}
