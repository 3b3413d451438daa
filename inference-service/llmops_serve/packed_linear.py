"""CPU linears with their weights prepacked once into oneDNN's blocked layout.

A plain fp32 ``nn.Linear`` on CPU calls a GEMM that re-reads the row-major weight in a layout made
for large batches; a decode step multiplies 1-64 rows by every weight of the model, and there the
GEMM is most of the step. oneDNN's ``_linear_pointwise`` on a weight reordered once at load (what
``torch.compile`` does for frozen CPU weights) runs the same products faster at those sizes, with no
compilation. The products are the same up to fp32 rounding of a different summation order.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger("llmops_serve.packed_linear")


class PackedLinear(nn.Module):
    """``nn.Linear`` whose weight is held only in oneDNN's packed layout."""

    def __init__(self, linear: nn.Linear, batch_hint: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), batch_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=oneDNN"


def usable(model: Any) -> bool:
    """Only fp32 models on CPU, with oneDNN present: GPUs have their own GEMMs, int8 has its own."""
    first = next(model.parameters())
    return (
        first.device.type == "cpu" and first.dtype == torch.float32 and torch.backends.mkldnn.is_available()
    )


def pack_linears(model: Any, batch_hint: int = 16) -> int:
    """Swap every plain ``nn.Linear`` of the decoder for a PackedLinear; returns how many.

    The output projection stays as it is: it may share its weight with the input embeddings, and
    callers read the vocabulary size from it.
    """
    if not usable(model):
        return 0
    head = model.get_output_embeddings()
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear and child is not head
    ]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear(child, batch_hint))
    log.info("packed %d linear layers for oneDNN (batch hint %d)", len(swaps), batch_hint)
    return len(swaps)
