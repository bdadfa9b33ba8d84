"""A KV cache that grows in blocks instead of one token at a time.

transformers' ``DynamicLayer`` appends each decoded token with ``torch.cat``, which copies the
layer's whole cache at every step: with 136 rows of 3 key/value heads that was a tenth of the
evaluation's generation time on CPU. ``RoomyLayer`` keeps ``ROOM`` free columns after the
tokens it holds, writes each new token into them, and copies only when they run out. What it
returns are views of its first ``length`` columns, so the attention sees exactly the tensors
``DynamicLayer`` would give it and the answers are the same.

Anything that assigns ``keys``/``values`` (the batch's joins and row drops in
``batch_cache``, transformers' ``batch_select_indices`` and ``crop``) replaces the block with
what it assigns; the next token then starts a new block.

Imported when a cache is made, since it needs transformers.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

ROOM = 64  # free columns added to a block when it fills


class RoomyLayer(DynamicLayer):
    """``DynamicLayer`` whose appends write into spare columns (see the module's text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Each of keys and values: a block and how many of its columns hold tokens. They are
        # assigned one after the other (keys first), so each keeps its own count.
        self._blocks: dict[str, tuple[torch.Tensor | None, int]] = {
            "keys": (None, 0),
            "values": (None, 0),
        }
        super().__init__(*args, **kwargs)

    def _get(self, name: str) -> torch.Tensor | None:
        block, length = self._blocks[name]
        if block is None or block.dim() != 4 or block.shape[-2] == length:
            return block
        return block[:, :, :length]

    def _set(self, name: str, tensor: torch.Tensor | None) -> None:
        length = tensor.shape[-2] if tensor is not None and tensor.dim() == 4 else 0
        self._blocks[name] = (tensor, length)

    keys = property(lambda self: self._get("keys"), lambda self, t: self._set("keys", t))
    values = property(lambda self: self._get("values"), lambda self, t: self._set("values", t))

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self._append("keys", key_states)
        self._append("values", value_states)
        return self.keys, self.values

    def _append(self, name: str, new: torch.Tensor) -> None:
        block, length = self._blocks[name]
        added = new.shape[-2]
        if block is None or block.dim() != 4:
            block, length = _block(new, None, 0), 0
        elif length + added > block.shape[-2]:
            block = _block(new, block, length)
        else:
            block[:, :, length : length + added] = new
        self._blocks[name] = (block, length + added)


def _block(new: torch.Tensor, old: torch.Tensor | None, length: int) -> torch.Tensor:
    """A block holding ``old``'s first ``length`` columns, then ``new``, then ``ROOM`` free."""
    shape = list(new.shape)
    shape[-2] = length + new.shape[-2] + ROOM
    block = new.new_empty(shape)
    if old is not None and length:
        block[:, :, :length] = old[:, :, :length]
    block[:, :, length : length + new.shape[-2]] = new
    return block


def new_cache(config: Any) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose plain layers are ``RoomyLayer``s (sliding-window
    and other special layers stay as transformers makes them)."""
    cache = DynamicCache(config=config)
    cache.layers = [
        RoomyLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache
