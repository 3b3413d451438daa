"""Llama decoders with fused projections, and a lean forward (prefill, decode) that calls them directly.

A decode step of a small model is bound by operator dispatch, not arithmetic: at batch 16 the
4.5M-parameter bench model's step spent about 40 % of its time in some 300 small calls (three q/k/v
GEMMs where one would do, two for gate/up, the norm's five ops, rotary cos/sin recomputed per step,
the mask builder, output dataclasses). At load, `fuse_llama` concatenates q/k/v into one linear and
gate/up into one (the outputs are split with views), so prefill through transformers' own forward
makes fewer calls too; `LeanLlama` then runs prefills and one-token steps with a rotary table built
once, one fused RMSNorm kernel per norm, and the same modules and KV cache layers, nothing else.

Results equal the unfused model's up to fp32 rounding of the fused norm (tested on greedy tokens and
logits); used only for fp32 Llama-family models on CPU, where the linears are packed as well.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

log = logging.getLogger("llmops_serve.llama_fused")

# Rotary types whose cos/sin depend on the position only (not on the sequence length seen so far).
STATIC_ROPE = {"default", "linear", "llama3"}


class FusedLlamaAttention(nn.Module):
    """LlamaAttention with q, k and v from one linear; same forward contract for transformers' layers."""

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        cfg = attn.config
        self.config, self.layer_idx, self.head_dim = cfg, attn.layer_idx, attn.head_dim
        self.num_heads, self.num_kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.num_key_value_groups, self.scaling = attn.num_key_value_groups, attn.scaling
        self.is_causal, self.attention_dropout = True, 0.0
        self.qkv_proj = _concat([attn.q_proj, attn.k_proj, attn.v_proj])
        self.o_proj = attn.o_proj
        self.q_width = self.num_heads * self.head_dim
        self.kv_width = self.num_kv_heads * self.head_dim

    def forward(self, hidden_states, position_embeddings, attention_mask=None, cache=None, **kwargs):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q, k, v = self.qkv_proj(hidden_states).split([self.q_width, self.kv_width, self.kv_width], dim=-1)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        q, k = apply_rotary_pos_emb(q, k, *position_embeddings)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        out, _ = sdpa_attention_forward(self, q, k, v, attention_mask, scaling=self.scaling, **kwargs)
        return self.o_proj(out.reshape(*hidden_states.shape[:-1], -1)), None


class FusedLlamaMLP(nn.Module):
    """LlamaMLP (SiLU) with gate and up from one linear."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.width = mlp.intermediate_size
        self.gate_up_proj = _concat([mlp.gate_proj, mlp.up_proj])
        self.down_proj = mlp.down_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.width, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def _concat(linears: list[nn.Linear]) -> nn.Linear:
    first = linears[0]
    bias = first.bias is not None
    out = nn.Linear(first.in_features, sum(m.out_features for m in linears), bias=bias)
    out = out.to(device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(torch.cat([m.weight for m in linears]))
        if bias:
            out.bias.copy_(torch.cat([m.bias for m in linears]))
    return out.requires_grad_(False)


def fusable(model: Any) -> bool:
    """A plain-Linear fp32 CPU Llama with SiLU, eager/SDPA attention and position-only rotary."""
    from transformers import LlamaForCausalLM

    if type(model) is not LlamaForCausalLM:
        return False
    cfg = model.config
    first = next(model.parameters())
    layer = model.model.layers[0]
    return (
        first.device.type == "cpu"
        and first.dtype == torch.float32
        and cfg.hidden_act == "silu"
        and cfg._attn_implementation in ("sdpa", "eager")
        and model.model.rotary_emb.rope_type in STATIC_ROPE
        and getattr(cfg, "pretraining_tp", 1) == 1
        and type(layer.self_attn.q_proj) is nn.Linear
        and type(layer.mlp.gate_proj) is nn.Linear
    )


def fuse_llama(model: Any) -> bool:
    """Swap every layer's attention and MLP for the fused ones, in place; False if the model is not one."""
    if not fusable(model):
        return False
    for layer in model.model.layers:
        layer.self_attn = FusedLlamaAttention(layer.self_attn)
        layer.mlp = FusedLlamaMLP(layer.mlp)
    model.config._attn_implementation = "sdpa"
    log.info("fused q/k/v and gate/up projections of %d layers", len(model.model.layers))
    return True


class LeanLlama:
    """Prefill and one-token decode steps of a fused Llama, without transformers' forward.

    Same modules, same KV cache layers (``layer.update``), same SDPA; the rotary cos/sin come from
    the model's own rotary module, evaluated once for a table of positions that doubles on demand
    (so a 128k-context model holds a table as long as its longest sequence so far, not 128k rows).
    """

    def __init__(self, model: Any, positions: int = 1024) -> None:
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.layers = [
            (lay.input_layernorm, lay.self_attn, lay.post_attention_layernorm, lay.mlp)
            for lay in inner.layers
        ]
        self.norm = inner.norm
        self.head = model.lm_head
        self.rotary = inner.rotary_emb
        attn = self.layers[0][1]
        self.heads, self.kv_heads, self.head_dim = attn.num_heads, attn.num_kv_heads, attn.head_dim
        self.qk_width = (self.heads + self.kv_heads) * self.head_dim
        self._table(positions)

    def _table(self, n: int) -> None:
        """cos and sign-folded sin per position: rotate_half(x) * sin == roll(x, d/2) * [-sin | sin]."""
        pos = torch.arange(n, device=self.embed.device)[None]
        cos, sin = self.rotary(self.embed[:1], pos)
        half = self.head_dim // 2
        sign = torch.ones(self.head_dim, dtype=sin.dtype, device=sin.device)
        sign[:half] = -1
        self.cos, self.sin = cos[0], sin[0] * sign

    @staticmethod
    def _rms(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)

    def _cover(self, positions: torch.Tensor) -> None:
        if int(positions.max()) >= self.cos.shape[0]:
            self._table(2 * (int(positions.max()) + 1))

    def _qkv(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """q (rotated), k (rotated) and v from a fused projection, heads on dim -3: [..., heads, D]."""
        qk = qkv[..., : self.qk_width].unflatten(-1, (-1, self.head_dim))
        qk = qk * cos + qk.roll(self.head_dim // 2, dims=-1) * sin
        v = qkv[..., self.qk_width :].unflatten(-1, (self.kv_heads, self.head_dim))
        return qk[..., : self.heads, :], qk[..., self.heads :, :], v

    def decode(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        """ids, positions: [B]; mask: [B, L] bool over the cache after this step; returns logits [B, V]."""
        self._cover(positions)
        b, d = ids.shape[0], self.head_dim
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # [B, 1, D]
        # Additive, once per step: SDPA would convert a boolean mask again in every layer.
        bias = torch.zeros(mask.shape, dtype=self.embed.dtype, device=mask.device)
        attn_mask = bias.masked_fill_(~mask, float("-inf"))[:, None, None, :]
        x = F.embedding(ids, self.embed)
        for i, (norm1, attn, norm2, mlp) in enumerate(self.layers):
            q, k, v = self._qkv(attn.qkv_proj(self._rms(norm1, x)), cos, sin)
            q = q.reshape(b, self.kv_heads, -1, d)  # GQA: a kv head's queries as rows of one query
            k, v = cache.layers[i].update(k.unsqueeze(2), v.unsqueeze(2))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=attn.scaling)
            x = x + attn.o_proj(o.view(b, -1))
            x = x + mlp(self._rms(norm2, x))
        return self.head(self._rms(self.norm, x))

    def prefill(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None, all_logits: bool
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Prompts from an empty cache. ids, positions, mask: [B, T] (mask None: no row is padded).

        Returns the logits ([B, T, V], or [B, 1, V] for the last position only) and every layer's
        keys and values [B, kv_heads, T, D]. Padding queries may see themselves (a row with nothing
        to attend to would be NaN); no real token ever attends to padding.
        """
        self._cover(positions)
        b, t = ids.shape
        cos, sin = self.cos[positions].unsqueeze(2), self.sin[positions].unsqueeze(2)  # [B, T, 1, D]
        attn_mask = None
        if mask is not None:
            tri = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
            allowed = (tri & mask.bool()[:, None, None, :]) | torch.eye(
                t, dtype=torch.bool, device=ids.device
            )
            attn_mask = torch.zeros(allowed.shape, dtype=self.embed.dtype, device=ids.device)
            attn_mask.masked_fill_(~allowed, float("-inf"))
        rep = self.heads // self.kv_heads
        x = F.embedding(ids, self.embed)
        kv = []
        for norm1, attn, norm2, mlp in self.layers:
            q, k, v = self._qkv(attn.qkv_proj(self._rms(norm1, x)), cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            kv.append((k, v))
            if rep > 1:
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None, scale=attn.scaling
            )
            x = x + attn.o_proj(o.transpose(1, 2).reshape(b, t, -1))
            x = x + mlp(self._rms(norm2, x))
        if not all_logits:
            x = x[:, -1:]
        return self.head(self._rms(self.norm, x)), kv


def lean_for(model: Any) -> LeanLlama | None:
    """The lean forward when `fuse_llama` fused this model, else None (transformers' forward)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers or not isinstance(layers[0].self_attn, FusedLlamaAttention):
        return None
    return LeanLlama(model)
