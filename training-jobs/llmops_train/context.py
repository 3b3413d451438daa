"""Context parallelism: each sequence split across K ranks, attention exchanged between them.

The ranks form a ``dp x cp`` device mesh (rank = dp_index * K + cp_index). The K ranks of a cp group
read the same sequences; PyTorch's ``context_parallel`` shards the input ids, the labels (shifted
once over the whole sequence, so no pair is lost at a shard boundary) and the global position ids
with its head-tail load balancer: rank r keeps chunks r and 2K-1-r of 2K, so every rank does the same
share of causal attention. Rotary embeddings read the global positions.

Attention needs every earlier key of the sequence, which lives on other ranks:

* on CUDA, PyTorch's ring attention: ``context_parallel`` swaps
  ``F.scaled_dot_product_attention`` for its ring implementation (flash / memory-efficient kernels),
  and our attention function calls it with ``is_causal=True``;
* on CPU, where that ring dispatches no kernel (PyTorch registers it for the CUDA flash, efficient
  and cuDNN ops only), :class:`GatheredAttention`: keys, values and their positions are all-gathered
  over the cp group and masked causally by global position, which is exactly full attention for the
  local queries. Only local tensors are saved for backward: the gather is repeated in backward, and
  each key's gradient is summed over the group.

Each rank's loss is its shard's token-loss sum divided by the whole batch's token count, so the K
shares add up to the full sequence mean; it is multiplied by K before backward so that DDP/FSDP's
average over all world ranks is a sum over cp and a mean over dp.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .config import InputError

NAME = "llmops_context_parallel"  # the attention implementation registered with transformers
IGNORE = -100
# The function itself, not the attribute: PyTorch's context_parallel replaces F's attribute while active.
_sdpa = F.scaled_dot_product_attention


@dataclass(frozen=True)
class Layout:
    """Where this rank sits: its data-parallel group (which sequences) and cp group (which part)."""

    dp_rank: int
    dp_world: int
    cp_rank: int
    cp_world: int
    mesh: Any = None  # the cp sub-mesh (DeviceMesh), None without context parallelism

    @property
    def enabled(self) -> bool:
        return self.cp_world > 1


NONE = Layout(0, 1, 0, 1)  # no context parallelism, one data-parallel rank


def layout(rank: int, world: int, k: int, device_type: str, seq_len: int) -> Layout:
    """The dp x cp mesh; the run's actual world size is checked here, the manifest's by the API."""
    if k == 1:
        return Layout(rank, world, 0, 1)
    if world % k or seq_len % (2 * k):
        raise InputError(
            f"hyperparameters.contextParallel {k} needs a world size and a sequenceLength/2 divisible by it; "
            f"this run has world size {world}, sequenceLength {seq_len}"
        )
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device_type, (world // k, k), mesh_dim_names=("dp", "cp"))
    return Layout(rank // k, world // k, rank % k, k, mesh["cp"])


def enable(model: torch.nn.Module, lay: Layout) -> None:
    """Route the model's attention through :func:`attention` and switch off transformers' mask building
    (causality comes from global positions; a mask would also be refused by the CUDA ring)."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError:
        raise InputError(
            "hyperparameters.contextParallel > 1 needs transformers with AttentionInterface (>= 4.53)"
        ) from None
    if getattr(model.config, "attention_dropout", 0.0):
        raise InputError(
            f"hyperparameters.contextParallel needs a model with attention_dropout 0 "
            f"(its config.json has {model.config.attention_dropout})"
        )
    AttentionInterface.register(NAME, functools.partial(attention, group=lay.mesh.get_group()))
    AttentionMaskInterface.register(NAME, lambda *args, **kwargs: None)
    model.config._attn_implementation = NAME
    for module in model.modules():  # peft wrappers and sub-configs share or copy the config
        if hasattr(module, "config") and hasattr(module.config, "_attn_implementation"):
            module.config._attn_implementation = NAME


class GatheredAttention(torch.autograd.Function):
    """Causal attention of local queries over the whole sequence's keys and values (CPU path).

    Forward all-gathers k, v and positions over the cp group without keeping them; backward gathers
    again, recomputes the attention with autograd, and all-reduces the gathered keys' and values'
    gradients so each rank gets the sum for its own shard.
    """

    @staticmethod
    def forward(ctx, q, k, v, q_pos, group, scale):  # type: ignore[override]
        k_all, v_all, k_pos = _gather(k, group), _gather(v, group), _gather(q_pos, group, dim=1)
        ctx.save_for_backward(q, k, v, q_pos, k_pos)
        ctx.group, ctx.scale = group, scale
        return _masked(q, k_all, v_all, q_pos, k_pos, scale)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, v, q_pos, k_pos = ctx.saved_tensors
        group = ctx.group
        with torch.enable_grad():
            q_ = q.detach().requires_grad_()
            k_all = _gather(k, group).requires_grad_()
            v_all = _gather(v, group).requires_grad_()
            out = _masked(q_, k_all, v_all, q_pos, k_pos, ctx.scale)
            dq, dk_all, dv_all = torch.autograd.grad(out, (q_, k_all, v_all), grad_out)
        both = torch.stack([dk_all, dv_all])
        dist.all_reduce(both, group=group)
        n, r = k.shape[2], dist.get_rank(group)
        return dq, both[0, :, :, r * n : (r + 1) * n], both[1, :, :, r * n : (r + 1) * n], None, None, None


def _gather(x: torch.Tensor, group: Any, dim: int = 2) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def _masked(q, k, v, q_pos, k_pos, scale) -> torch.Tensor:
    """SDPA with a boolean mask built from global positions; kv heads repeated for grouped queries."""
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    mask = (k_pos[:, None, None, :] <= q_pos[:, None, :, None]).to(q.device)
    return _sdpa(q, k, v, attn_mask=mask, scale=scale)


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids: torch.Tensor | None = None,
    *,
    group: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-interface signature; [batch, heads, local tokens, dim] in, [b, t, h, d] out."""
    if query.device.type == "cuda":  # PyTorch's ring attention, patched in by context_parallel
        if key.shape[1] != query.shape[1]:
            key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
            value = value.repeat_interleave(query.shape[1] // value.shape[1], dim=1)
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    else:
        out = GatheredAttention.apply(query, key, value, position_ids, group, scaling)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def shard(lay: Layout, ids: torch.Tensor):
    """Inside: (this rank's input ids, labels, position ids) of ``ids``; attention exchanges over cp.

    Labels are the next token (IGNORE after the last), computed before sharding.
    """
    from torch.distributed.tensor.experimental import context_parallel

    labels = torch.full_like(ids, IGNORE)
    labels[:, :-1] = ids[:, 1:]
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids).contiguous()
    ids = ids.clone()
    buffers = [ids, labels, pos]
    with context_parallel(
        lay.mesh, buffers=buffers, buffer_seq_dims=[1, 1, 1], no_restore_buffers=set(buffers)
    ):
        yield ids, labels, pos


def loss(
    model: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor, pos: torch.Tensor, tokens: int
) -> torch.Tensor:
    """This shard's share of the batch's mean next-token loss (``tokens``: valid labels of the whole batch)."""
    logits = model(input_ids=ids, position_ids=pos).logits
    return (
        F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
        / tokens
    )
