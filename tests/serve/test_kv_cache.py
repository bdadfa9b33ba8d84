"""The block-growing KV cache layer: the same tensors as transformers' DynamicLayer, without a
copy of the whole cache at every token."""

from __future__ import annotations

import torch
from transformers import LlamaConfig
from transformers.cache_utils import DynamicLayer

from workloads.serve import batch_cache
from workloads.serve.kv_cache import ROOM, RoomyLayer, new_cache


def states(rows: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = (rows, 3, tokens, 8)
    return torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)


def test_appends_match_dynamic_layer_and_copy_only_when_a_block_fills():
    roomy, plain = RoomyLayer(), DynamicLayer()
    blocks = set()
    for step in range(2 * ROOM + 5):
        keys, values = states(4, 7 if step == 0 else 1, step)  # a prefill, then one a step
        got = roomy.update(keys, values)
        want = plain.update(keys, values)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        blocks.add(roomy._blocks["keys"][0].data_ptr())
    assert roomy.get_seq_length() == plain.get_seq_length() == 7 + 2 * ROOM + 4
    # One block for the prefill and its room, then a new one each time ROOM tokens filled it.
    assert len(blocks) == 3


def test_joins_and_row_drops_then_appends_match_dynamic_layer():
    """The engine's batch edits assign keys and values one after the other; each keeps its own
    length, and appending afterwards goes on from what was assigned."""

    def cache_of(layer_type):
        cache = new_cache(LlamaConfig(num_hidden_layers=1))
        cache.layers = [layer_type()]
        return cache

    roomy, plain = cache_of(RoomyLayer), cache_of(DynamicLayer)
    masks = []
    for cache in (roomy, plain):
        cache.update(*states(2, 5, 1), 0)
        joining = cache_of(type(cache.layers[0]))
        joining.update(*states(3, 9, 2), 0)
        mask = batch_cache.join(cache, torch.ones(2, 5), joining, torch.ones(3, 9))
        for step in range(3):
            cache.update(*states(5, 1, 10 + step), 0)
        mask = torch.cat([mask, torch.ones(5, 3)], dim=1)
        # The joined rows leave: the four padding columns of the first two are cut.
        masks.append(batch_cache.keep_rows(cache, mask, [0, 1]))
        cache.update(*states(2, 1, 20), 0)
    assert torch.equal(masks[0], masks[1])
    assert torch.equal(roomy.layers[0].keys, plain.layers[0].keys)
    assert torch.equal(roomy.layers[0].values, plain.layers[0].values)
    assert roomy.get_seq_length() == plain.get_seq_length() == 5 + 3 + 1


def test_new_cache_uses_roomy_layers_for_plain_attention():
    cache = new_cache(LlamaConfig(num_hidden_layers=3))
    assert [type(layer) for layer in cache.layers] == [RoomyLayer] * 3
