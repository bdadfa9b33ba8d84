"""The running batch's KV cache and attention mask: rows joined side by side, rows dropped.

Rows are left-padded, so every row's newest token sits in the last column. Joining two batches
pads the narrower one on the left; dropping rows may leave leading columns that no remaining row
attends to, and those are cut.
"""

from __future__ import annotations

from typing import Any


def pad_left(tensor: Any, width: int) -> Any:
    """``tensor`` (..., length, dim) with zero columns before its first, to ``width``."""
    import torch

    missing = width - tensor.shape[-2]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[-2] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


def pad_mask_left(mask: Any, width: int) -> Any:
    """An attention mask (rows, length) with zero columns before its first, to ``width``."""
    import torch

    missing = width - mask.shape[1]
    if missing <= 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=1)


def join(cache: Any, mask: Any, new_cache: Any, new_mask: Any) -> Any:
    """Append ``new_cache``'s rows to ``cache`` (in place); the joined mask is returned."""
    import torch

    width = max(mask.shape[1], new_mask.shape[1])
    for old, new in zip(cache.layers, new_cache.layers, strict=True):
        old.keys = torch.cat([pad_left(old.keys, width), pad_left(new.keys, width)], dim=0)
        old.values = torch.cat([pad_left(old.values, width), pad_left(new.values, width)], dim=0)
    return torch.cat([pad_mask_left(mask, width), pad_mask_left(new_mask, width)], dim=0)


def keep_rows(cache: Any, mask: Any, rows: list[int]) -> Any:
    """Keep only ``rows`` of ``cache`` (in place) and cut the columns none of them attends to;
    the kept rows' mask is returned."""
    import torch

    index = torch.tensor(rows, device=mask.device)
    cache.batch_select_indices(index)
    mask = mask[index]
    used = mask.sum(0).nonzero()
    first = int(used[0]) if used.numel() else 0
    if first > 0:
        mask = mask[:, first:]
        for layer in cache.layers:
            layer.keys = layer.keys[:, :, first:, :]
            layer.values = layer.values[:, :, first:, :]
    return mask
