"""Frozen weights kept in bf16 for bf16 autocast on the CPU: the same numbers, fewer casts."""

from __future__ import annotations

import copy

import pytest
import torch
from model_helpers import random_llama_dir


@pytest.fixture(scope="module")
def peft_pair(tmp_path_factory, embedded_tokenizer_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = random_llama_dir(
        tmp_path_factory.mktemp("llama") / "m", embedded_tokenizer_dir, num_hidden_layers=3
    )
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    assert base.config.tie_word_embeddings  # the head shares the embeddings, as SmolLM2's
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        layers_to_transform=[2],
    )
    model = get_peft_model(base, config)
    for name, param in model.named_parameters():  # B starts at zero; give it values
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model, copy.deepcopy(model)


def _step(model, ids):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    return loss.detach(), grads


def test_frozen_weights_in_bf16_give_the_same_loss_and_gradients(peft_pair):
    from workloads.train.build import frozen_weights_in_bf16

    as_loaded, converted = peft_pair
    count = frozen_weights_in_bf16(converted)
    linears = [m for m in converted.modules() if type(m) is torch.nn.Linear]
    frozen = [m for m in linears if not m.weight.requires_grad]
    assert count == len(frozen) > 0
    assert all(m.weight.dtype == torch.bfloat16 for m in frozen)
    assert all(m.weight.dtype == torch.float32 for m in linears if m.weight.requires_grad)
    # The head got a bf16 copy of its own; the token lookup keeps fp32 rows.
    assert converted.get_input_embeddings().weight.dtype == torch.float32
    assert converted.get_output_embeddings().weight.dtype == torch.bfloat16

    ids = torch.randint(
        0, as_loaded.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1)
    )
    loss, grads = _step(as_loaded, ids)
    loss_bf16, grads_bf16 = _step(converted, ids)
    assert torch.equal(loss, loss_bf16)
    assert grads.keys() == grads_bf16.keys() and grads
    for name, grad in grads.items():
        assert torch.equal(grad, grads_bf16[name]), name
