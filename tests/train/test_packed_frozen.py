"""Frozen Linear layers of an fp32 CPU run multiplied by oneDNN with packed weights: the same
products and input gradients as ``F.linear`` up to rounding, the same bits on any thread count,
and a training run that ends where the unpacked one does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from model_helpers import random_llama_dir
from train_helpers import config_for

from workloads.train.packed_frozen import PackedFrozenLinear, pack_frozen_linears

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"
)


def _frozen(in_features: int, out_features: int, bias: bool) -> torch.nn.Linear:
    torch.manual_seed(0)
    layer = torch.nn.Linear(in_features, out_features, bias=bias)
    layer.requires_grad_(False)
    return layer


@pytest.mark.parametrize("bias", [False, True])
def test_a_packed_layer_computes_what_linear_computes(bias):
    plain = _frozen(96, 160, bias)
    packed = _frozen(96, 160, bias)
    assert pack_frozen_linears(packed) == 1 and type(packed) is PackedFrozenLinear
    x = torch.randn(3, 37, 96, requires_grad=True)
    x_plain = x.detach().clone().requires_grad_(True)
    out = packed(x)
    expected = F.linear(x_plain, plain.weight, plain.bias)
    assert out.shape == expected.shape == (3, 37, 160)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_plain.grad, rtol=1e-5, atol=1e-5)
    assert packed.weight.grad is None  # frozen: no weight gradient is ever made
    with torch.autocast("cpu", dtype=torch.bfloat16):  # anything but plain fp32: F.linear
        assert packed(x.detach()).dtype == torch.bfloat16


def test_the_bits_do_not_depend_on_the_thread_count_or_the_rows():
    layer = _frozen(576, 1536, False)
    pack_frozen_linears(layer)
    x = torch.randn(480, 576)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = layer(x)
        torch.set_num_threads(2)
        two = layer(x)
        part = layer(x[:100])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two) and torch.equal(part, one[:100])


def test_only_frozen_fp32_linears_are_packed(tmp_path, embedded_tokenizer_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        random_llama_dir(tmp_path / "m", embedded_tokenizer_dir), dtype=torch.float32
    )
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], layers_to_transform=[1])
    )
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    frozen = [m for m in linears if not m.weight.requires_grad]
    count = pack_frozen_linears(model)
    assert count == len(frozen) > 0
    assert all(type(m) is PackedFrozenLinear for m in frozen)
    assert all(type(m) is torch.nn.Linear for m in linears if m.weight.requires_grad)
    # The head stays tied to the embeddings: the same fp32 parameter.
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight


def test_a_run_with_packed_frozen_layers_ends_where_the_unpacked_one_does(
    tmp_path, embedded_tokenizer_dir, snapshot_dir
):
    from workloads.train import run_training

    model_dir = random_llama_dir(tmp_path / "m", embedded_tokenizer_dir, num_hidden_layers=4)
    snapshot = snapshot_dir
    results = {}
    for packed in (True, False):
        cfg = config_for(
            model_dir,
            snapshot,
            tmp_path / f"packed-{packed}",
            "precision=fp32",
            f"pack_frozen={str(packed).lower()}",
            "data.max_length=128",
            "optim.max_steps=8",
            "lora.top_layers=2",
            "checkpoint.every_steps=0",
            "merge=false",
            "tracking.log_model=false",
        )
        results[packed] = run_training(cfg)
    on, off = results[True], results[False]
    assert on.global_step == off.global_step == 8
    assert on.final_loss == pytest.approx(off.final_loss, rel=1e-3)
    assert on.eval_loss_after == pytest.approx(off.eval_loss_after, rel=1e-3)
