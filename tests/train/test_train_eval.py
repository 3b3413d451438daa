"""Evaluation loss: the same number for any batchSize and world size, never silently off."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llmops_train import distributed as D
from llmops_train.data import eval_batches
from llmops_train.loop import evaluate_loss

ONE = D.Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))


@pytest.mark.parametrize(("world", "batch"), [(1, 1), (1, 8), (2, 3), (2, 8), (3, 4)])
def test_ranks_share_exactly_the_first_limit_blocks(world: int, batch: int) -> None:
    blocks = torch.arange(10 * 4).view(10, 4)
    limit = 3
    want = min(10, limit * batch)
    shares = [eval_batches(blocks, batch, rank, world, limit) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1, "every rank runs the same number of batches"
    seen = sorted(int(row[0]) // 4 for share in shares for b in share for row in b.blocks[: b.weight])
    assert seen == list(range(want))
    assert sum(b.weight for share in shares for b in share) == want


def test_a_held_out_set_smaller_than_one_global_batch_is_still_evaluated() -> None:
    blocks = torch.arange(3 * 4).view(3, 4)
    shares = [eval_batches(blocks, 8, rank, 2, 20) for rank in range(2)]
    assert [sum(b.weight for b in s) for s in shares] == [3, 0]
    assert [len(s) for s in shares] == [1, 1], "the empty rank still joins with a zero-weight batch"


def test_eval_loss_does_not_depend_on_the_batch_size() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    model = LlamaForCausalLM(config)
    blocks = torch.randint(0, 50, (10, 12))
    with torch.no_grad():
        per_block = [model(input_ids=b[None], labels=b[None]).loss.item() for b in blocks]
    want = sum(per_block) / len(per_block)
    for batch in (1, 3, 4, 8, 16):
        got = evaluate_loss(model, model, eval_batches(blocks, batch, 0, 1, limit=100), ONE)
        assert got == pytest.approx(want, rel=1e-5), batch
    assert evaluate_loss(model, model, [], ONE) is None
