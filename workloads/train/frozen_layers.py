"""Adapters on the top decoder layers only, and the frozen layers below them computed once.

With ``lora.top_layers: N`` the adapters go on the last N decoder layers (PEFT's
``layers_to_transform``). The layers below have no trainable weight and no dropout, so for a
given training row their output is the same at every epoch, and nothing needs their gradient:
autograd stops at the first adapted layer. ``FrozenPrefix`` goes further and computes that
output once per row: the first decoder layer is replaced by one call that returns the stored
output of the last frozen layer (computing and storing it on the first visit), and the other
frozen layers pass their input through. The arithmetic is the same as running them again, so a
run with the store and one without reach the same weights (a test checks it).

Rows are told apart by their token ids and position ids, which fix the frozen layers' output.
Generation (a KV cache in use) runs the frozen layers as usual. The store lives in memory and
stops growing at ``lora.frozen_cache_mb``; rows past it are computed at every visit.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import torch

log = logging.getLogger(__name__)


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder layers of a causal LM (PEFT-wrapped or not): the ``ModuleList`` with one
    entry per hidden layer."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError("cannot find the model's decoder layers (no ModuleList of num_hidden_layers)")


def top_layer_indices(num_layers: int, top: int | None) -> list[int] | None:
    """Indices of the layers that get adapters: the last ``top`` (None or all: every layer)."""
    if top is None or top >= num_layers:
        return None
    return list(range(num_layers - top, num_layers))


class FrozenPrefix:
    """Stores the output of the frozen lower layers per row and replays it at later visits."""

    def __init__(self, layers: torch.nn.ModuleList, frozen: int, max_bytes: int) -> None:
        if not 0 < frozen < len(layers):
            raise ValueError(f"frozen layers must be between 1 and {len(layers) - 1}")
        self.layers = layers
        self.frozen = frozen
        self.max_bytes = max_bytes
        self.store: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._ids: torch.Tensor | None = None
        self._originals = [layer.forward for layer in layers[:frozen]]

    def install(self, embeddings: torch.nn.Module) -> FrozenPrefix:
        """Hook the token ids as they enter ``embeddings`` and replace the frozen layers."""
        for layer in self.layers[: self.frozen]:
            if any(p.requires_grad for p in layer.parameters()):
                raise ValueError("a layer below the adapted ones has trainable weights")
        embeddings.register_forward_pre_hook(self._remember_ids)
        self.layers[0].forward = self._first
        for layer in self.layers[1 : self.frozen]:
            layer.forward = _pass_through
        return self

    def _remember_ids(self, _module, args) -> None:
        self._ids = args[0] if args and isinstance(args[0], torch.Tensor) else None

    def _key(self, hidden: torch.Tensor, kwargs: dict) -> bytes | None:
        ids, positions = self._ids, kwargs.get("position_ids")
        if ids is None or positions is None or ids.shape != hidden.shape[:2]:
            return None
        digest = hashlib.blake2b(digest_size=16)
        for part in (ids, positions):
            digest.update(str(tuple(part.shape)).encode())
            digest.update(part.detach().cpu().numpy().tobytes())
        digest.update(str(torch.get_autocast_dtype("cpu")).encode())
        digest.update(str(torch.is_autocast_enabled(hidden.device.type)).encode())
        return digest.digest()

    def _run(self, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        for forward in self._originals:
            hidden = forward(hidden, **kwargs)
        return hidden

    def _first(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        if kwargs.get("use_cache") or kwargs.get("cache") is not None:
            return self._run(hidden_states, kwargs)  # generation: as usual
        key = self._key(hidden_states, kwargs)
        stored = self.store.get(key) if key is not None else None
        if stored is not None:
            self.hits += 1
            return stored
        self.misses += 1
        with torch.no_grad():
            out = self._run(hidden_states, kwargs).detach()
        size = out.numel() * out.element_size()
        if key is not None and self.bytes + size <= self.max_bytes:
            self.store[key] = out
            self.bytes += size
        return out

    def stats(self) -> dict[str, int]:
        return {
            "frozen_layers": self.frozen,
            "rows_computed": self.misses,
            "rows_replayed": self.hits,
            "stored_mib": round(self.bytes / 2**20),
        }

    def summary(self) -> str:
        return (
            f"frozen layers 0-{self.frozen - 1}: {self.misses} rows computed, {self.hits} "
            f"replayed, {len(self.store)} stored ({self.bytes / 2**20:.0f} MiB)"
        )


def _pass_through(hidden_states: torch.Tensor, **_kwargs) -> torch.Tensor:
    return hidden_states


def install_frozen_prefix(model: Any, top: int | None, max_mb: int) -> FrozenPrefix | None:
    """Replay the frozen layers of ``model`` (adapters on its top ``top`` layers); None when
    every layer is adapted or the store is switched off (``max_mb`` 0)."""
    layers = decoder_layers(model)
    indices = top_layer_indices(len(layers), top)
    if indices is None or max_mb <= 0:
        return None
    embeddings = model.get_input_embeddings()
    prefix = FrozenPrefix(layers, indices[0], max_mb * 2**20).install(embeddings)
    log.info(
        "adapters on layers %d-%d; frozen layers below are computed once per row",
        indices[0],
        indices[-1],
    )
    return prefix
