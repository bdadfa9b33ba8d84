"""``sdpa_packed``: one causal attention per example of a packed row, the same numbers as
transformers' masked ``sdpa``, and ``sdpa`` itself for anything that is not a packed row."""

from __future__ import annotations

import pytest
import torch

from workloads.models.packed_attention import example_spans, register


def test_spans_follow_the_restarts_of_the_positions():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert example_spans(positions) == [(0, 3), (3, 5), (5, 9)]
    assert example_spans(torch.arange(6).unsqueeze(0)) == [(0, 6)]


@pytest.mark.parametrize(
    "positions",
    [
        torch.tensor([[0, 1, 2], [0, 1, 2]]),  # two rows: a batch, not a packed row
        torch.tensor([[7, 8, 9]]),  # positions after a cache prefix
        torch.tensor([[0, 1, 3, 4]]),  # a jump that is not a restart at 0
    ],
)
def test_anything_but_one_packed_row_has_no_spans(positions):
    assert example_spans(positions) is None


def _pair(model_dir):
    from transformers import AutoModelForCausalLM

    register()
    models = {
        name: AutoModelForCausalLM.from_pretrained(
            model_dir, attn_implementation=name, dtype=torch.float32
        )
        for name in ("sdpa", "sdpa_packed")
    }
    return models["sdpa"], models["sdpa_packed"]


def test_a_packed_row_gives_the_masked_sdpa_loss_and_gradients(tiny_model_dir):
    masked, packed = _pair(tiny_model_dir)
    torch.manual_seed(0)
    lengths = [5, 9, 3, 7]
    ids = torch.randint(10, 1000, (1, sum(lengths)))
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    results = []
    for model in (masked, packed):
        model.zero_grad()
        # As training calls it: no KV cache, so transformers' sdpa masks the examples apart.
        out = model(input_ids=ids, position_ids=positions, labels=ids, use_cache=False)
        out.loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out.logits.detach(), out.loss.detach(), grads))
    (logits_a, loss_a, grads_a), (logits_b, loss_b, grads_b) = results
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert len(grads_a) == len(grads_b) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    # And each example sees only itself: its logits alone match its slice of the row.
    start = lengths[0]
    alone = packed(input_ids=ids[:, start : start + lengths[1]], use_cache=False).logits.detach()
    torch.testing.assert_close(logits_b[:, start : start + lengths[1]], alone, rtol=1e-5, atol=1e-5)


def test_generation_with_left_padding_is_unchanged(tiny_model_dir):
    from transformers import AutoTokenizer

    masked, packed = _pair(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = ["kubectl get pods", "a longer prompt about helm charts"]
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    pad = tokenizer.pad_token_id
    answers = [
        model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=pad)
        for model in (masked, packed)
    ]
    assert torch.equal(answers[0], answers[1])
