"""Prepacked Linear weights (the server's CPU default) answer exactly like the loaded model."""

from __future__ import annotations

import torch

from workloads.models.load import load_model
from workloads.models.precision import cpu_runs_bf16
from workloads.models.prepack import PackedLinear, prepack_linears

PROMPTS = [
    "How do I roll back a Kubernetes Deployment?",
    "What does terraform plan do?",
    "Why would a pod stay in CrashLoopBackOff?",
]


def greedy(loaded, text: str, max_new: int = 24) -> list[int]:
    tok = loaded.tokenizer
    chat = tok.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    ids = tok(chat, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = loaded.model.generate(
            **ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return out[0, ids["input_ids"].shape[1] :].tolist()


def test_prepacked_embedded_model_answers_token_for_token_alike(embedded_model_dir):
    # "auto" is the dtype this CPU runs best (bf16 only with native bf16 instructions), which
    # oneDNN can always pack; the bf16 refusal on other CPUs is the next test.
    plain = load_model(str(embedded_model_dir), dtype="auto", device="cpu")
    packed = load_model(str(embedded_model_dir), dtype="auto", device="cpu", prepack=True)
    linears = sum(type(m) is torch.nn.Linear for m in plain.model.modules())
    assert linears > 200  # 7 per decoder layer and the LM head
    assert packed.packed_linears == linears
    assert not any(type(m) is torch.nn.Linear for m in packed.model.modules())
    assert sum(isinstance(m, PackedLinear) for m in packed.model.modules()) == linears
    for text in PROMPTS:
        assert greedy(packed, text) == greedy(plain, text), text


def test_bf16_packing_follows_what_this_cpu_supports(tiny_model_dir, caplog):
    """oneDNN packs bf16 weights only where it has a bf16 path (AVX512-BW or AVX-NE-CONVERT);
    elsewhere nothing is swapped and the refusal is logged, whatever CPU runs this."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    packed = prepack_linears(model)
    if cpu_runs_bf16():
        assert packed == linears
    else:
        assert packed == 0
        assert "could not pack" in caplog.text
        assert sum(type(m) is torch.nn.Linear for m in model.modules()) == linears


def test_prepacked_tiny_model_keeps_padded_batch_logits(tiny_model_dir):
    plain = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    packed = load_model(str(tiny_model_dir), dtype="float32", device="cpu", prepack=True)
    assert packed.packed_linears > 0
    batch = plain.tokenizer(PROMPTS[:2], return_tensors="pt", padding=True)
    with torch.inference_mode():
        want = plain.model(**batch).logits
        got = packed.model(**batch).logits
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4)


def test_prepack_leaves_what_it_cannot_pack_whole(caplog):
    # oneDNN has no float64 inner product: nothing may be half-swapped.
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model = model.double()
    before = [type(m) for m in model]
    assert prepack_linears(model) == 0
    assert [type(m) for m in model] == before
    assert "stay unpacked" in caplog.text


def test_load_model_without_prepack_keeps_plain_linears(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert loaded.packed_linears == 0
    assert any(type(m) is torch.nn.Linear for m in loaded.model.modules())
