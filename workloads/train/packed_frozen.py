"""Frozen ``Linear`` layers of an fp32 training run on the CPU, multiplied by oneDNN with their
weights packed once.

In fp32, torch's CPU matrix products go to MKL. On the AMD EPYC development machine (AVX-512)
MKL reached about 200 GFLOP/s on 2 threads at the model's shapes, and oneDNN with the weight
packed into its blocked layout 430-476 GFLOP/s (``workloads.models.prepack`` does the same for
inference). A LoRA run leaves almost every weight frozen: the layers below the adapters, the
frozen matrices beside each adapter, and the LM head. None needs a weight gradient, so each is
packed twice, once as it is (the forward product) and once transposed (the gradient of its
input), and ``PackedFrozenLinear`` sends both products to oneDNN. The adapters, which train,
stay plain ``Linear`` layers.

The sums run in another order than MKL's, so losses move in the last bits (a test compares a
run with and without, and a product against ``F.linear``); oneDNN gives the same bits on 1 and 2
threads and for any subset of rows, so a run does not depend on its thread count. Memory: two
packed copies beside each frozen weight (about 1.1 GB for the 135M default).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from workloads.models.prepack import packed_product

log = logging.getLogger(__name__)

# The row count oneDNN shapes the packed layout for: a packed training row (data.max_length).
ROWS_HINT = 512


class _FrozenProduct(torch.autograd.Function):
    """``x @ Wᵀ (+ b)`` with the gradient of ``x`` only (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x, packed, packed_t, bias, in_features, out_features):
        ctx.packed_t, ctx.in_features = packed_t, in_features
        return packed_product(x, packed, bias, out_features)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        return (
            packed_product(grad, ctx.packed_t, None, ctx.in_features),
            None,
            None,
            None,
            None,
            None,
        )


class PackedFrozenLinear(torch.nn.Linear):
    """An ``nn.Linear`` whose weight never trains, its products done by oneDNN with the weight
    (and its transpose) packed. ``weight`` stays the module's own fp32 parameter, so saving,
    merging and PEFT see an ordinary ``Linear``. Anything but fp32 without autocast takes
    ``F.linear``."""

    _packed: torch.Tensor
    _packed_t: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.bias.detach()
        return _FrozenProduct.apply(
            x, self._packed, self._packed_t, bias, self.in_features, self.out_features
        )


def pack_frozen_linears(model: Any) -> int:
    """Turn every frozen fp32 ``nn.Linear`` of a CPU model into a ``PackedFrozenLinear``;
    returns how many. Nothing changes when this torch has no oneDNN; should oneDNN refuse a
    weight, the layers packed before it stay packed and the rest stay as they are (both compute
    the same products)."""
    if not torch.backends.mkldnn.is_available():
        log.warning("this torch build has no oneDNN; frozen Linear weights stay unpacked")
        return 0
    targets = [
        m
        for m in model.modules()
        if type(m) is torch.nn.Linear
        and not m.weight.requires_grad
        and m.weight.dtype == torch.float32
        and m.weight.device.type == "cpu"
    ]
    packed = 0
    with torch.no_grad():
        for module in targets:
            weight = module.weight.detach()
            try:
                forward = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS_HINT)
                backward = torch.ops.mkldnn._reorder_linear_weight(
                    weight.t().contiguous(), ROWS_HINT
                )
            except RuntimeError as exc:
                log.warning(
                    "oneDNN could not pack a frozen weight (%s); the rest stay as they are", exc
                )
                break
            module.__class__ = PackedFrozenLinear
            module._packed, module._packed_t = forward, backward
            packed += 1
    return packed
