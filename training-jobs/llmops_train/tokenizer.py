"""Byte-level BPE for preset models, trained on the job's corpus.

Training happens once, on rank 0, into the checkpoint directory; every rank then loads the saved files.
A resumed run finds them there and reuses them, so token ids never change across restarts or ranks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    """Train a byte-level BPE and save it as a Hugging Face tokenizer in ``out_dir``."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
