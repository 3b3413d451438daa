"""The batch's KV cache: transformers' DynamicCache with layers that grow in place.

DynamicLayer.update concatenates, copying the whole cache every step (O(length) per token, about a
tenth of a decode step at batch 16 here); GrowingLayer keeps spare capacity and copies only when the
buffer is full, doubling it.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A DynamicLayer with spare capacity: a decode step writes one column in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, spare: int = 64) -> None:
        super().__init__()
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.n = keys.shape[2]
        self._k = _with_capacity(keys, self.n + spare)
        self._v = _with_capacity(values, self.n + spare)
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._k[:, :, : self.n], self._v[:, :, : self.n]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        t = key_states.shape[2]
        if self.n + t > self._k.shape[2]:
            self._k = _with_capacity(self.keys, 2 * (self.n + t))
            self._v = _with_capacity(self.values, 2 * (self.n + t))
        self._k[:, :, self.n : self.n + t] = key_states
        self._v[:, :, self.n : self.n + t] = value_states
        self.n += t
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._views()


def growing_cache(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = [GrowingLayer(k, v) for k, v in kv]
    return cache


def _with_capacity(t: torch.Tensor, capacity: int) -> torch.Tensor:
    buf = t.new_empty(t.shape[0], t.shape[1], capacity, t.shape[3])
    buf[:, :, : t.shape[2]] = t
    return buf


def pad_left(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zero-pad `t` on the left of `dim` up to `width` (masked positions, so zeros are never read)."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
