"""Attention over a packed row as one causal attention per example in it (``sdpa_packed``).

A packed training row holds several examples end to end, each with positions that start again
at 0 (``data.packing``, padding-free). transformers' ``sdpa`` then builds a block-diagonal
causal mask over the whole row and hands it to ``scaled_dot_product_attention``; with a mask
the CPU kernel computes every query against every key of the row, and the mask zeroes what
crosses an example. The cloudops rows hold about 3.8 examples of about 127 tokens in 486, so
nearly nine tenths of that work is thrown away. ``sdpa_packed`` cuts the row at each restart of
the positions and runs causal attention on each example alone: the same products that survive
the mask, without the others.

Anything that is not one packed row without a cache prefix (a batch of rows, left padding,
decoding with a KV cache, dropout) goes to transformers' ``sdpa`` unchanged, so generation
answers are the same either way. ``register()`` adds the name to transformers' attention and
mask registries (the mask is ``sdpa``'s: the fallback needs it); a model loaded with
``attn_implementation="sdpa_packed"`` uses it.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch

NAME = "sdpa_packed"


def example_spans(position_ids: torch.Tensor) -> list[tuple[int, int]] | None:
    """``(start, end)`` of each example in one packed row, where the positions start at 0 and
    go up by one within an example; None for anything else (several rows, a cache offset)."""
    if position_ids.dim() != 2 or position_ids.shape[0] != 1:
        return None
    positions = position_ids[0]
    starts = torch.diff(positions, prepend=positions[:1]) != 1
    starts[0] = True
    if not bool((positions[starts] == 0).all()):
        return None
    bounds = [*starts.nonzero().flatten().tolist(), positions.shape[0]]
    return list(pairwise(bounds))


# The position ids of the forward pass in progress and their spans: every layer gets the same
# tensor, so the spans (and, on a GPU, the device syncs that find them) are worked out once.
_last: tuple[torch.Tensor | None, list[tuple[int, int]] | None] = (None, None)


def _spans_of(position_ids: torch.Tensor) -> list[tuple[int, int]] | None:
    global _last
    if _last[0] is not position_ids:
        _last = (position_ids, example_spans(position_ids))
    return _last[1]


def sdpa_packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    positions = kwargs.get("position_ids")
    spans = None
    if positions is not None and dropout == 0.0 and query.shape[2] == key.shape[2] > 1:
        spans = _spans_of(positions)
    if spans is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            is_causal=True,
            scale=scaling,
            enable_gqa=gqa,
        )
        for start, end in spans
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``sdpa_packed`` a name transformers accepts for ``attn_implementation``."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, sdpa_packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME
