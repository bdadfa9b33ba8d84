"""Model FLOPs from the config, checked against what torch really multiplies (``FlopCounterMode``
counts every matmul of a forward and backward pass), and the matmul peak measurement.

The tiny models use eager attention: it computes the whole ``l x l`` score matrix and masks it,
so their attention pairs are ``l²`` per sequence (``TokenStats`` of a causal sequence counts
the ``l(l+1)/2`` pairs the result needs); generation starts from a one-token prompt, where
both agree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from workloads.models import flops
from workloads.models.flops import (
    MODULES,
    ModelShape,
    TokenStats,
    TrainPlan,
    generation_flops,
    matmul_peak,
    train_flops,
)

SMOLLM2_135M = {
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def tiny_llama(**changes):
    from transformers import LlamaConfig, LlamaForCausalLM

    values = dict(
        vocab_size=300,
        hidden_size=48,
        intermediate_size=80,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    config = LlamaConfig(**(values | changes))
    torch.manual_seed(0)
    return LlamaForCausalLM(config), ModelShape.from_config(config)


def counted(model, ids) -> int:
    """The matmul FLOPs torch runs for one forward and backward pass over ``ids``."""
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    return counter.get_total_flops()


def with_lora(model, rank: int, modules: list[str], layers: list[int]):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=modules,
        layers_to_transform=layers,
    )
    return get_peft_model(model, config)


def square_stats(batch: int, length: int) -> TokenStats:
    """What eager attention computes for ``batch`` rows of ``length`` tokens."""
    return TokenStats(batch * length, batch * length * length, batch * length)


def test_the_embedded_model_has_its_134_5m_matmul_parameters():
    shape = ModelShape.from_config(SMOLLM2_135M)
    assert shape.layer_params == 3_538_944
    assert shape.head_params == 576 * 49152
    assert shape.matmul_params == 134_479_872  # tied embeddings: the whole parameter count


def test_matmul_parameters_are_those_of_the_real_modules():
    model, shape = tiny_llama()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert sum(m.weight.numel() for m in linears) == shape.matmul_params
    assert shape.matmul_params == shape.layers * shape.layer_params + shape.head_params


def test_full_fine_tuning_is_six_n_per_token_plus_attention():
    model, shape = tiny_llama()
    ids = torch.randint(0, 300, (2, 7))
    expected = train_flops(shape, TrainPlan(shape.layers, full=True), square_stats(2, 7))
    assert counted(model, ids) == expected
    one_token = TokenStats(tokens=1, pairs=0, logit_positions=1)
    assert train_flops(shape, TrainPlan(shape.layers, full=True), one_token) == (
        6 * shape.matmul_params
    )


@pytest.mark.parametrize(
    ("modules", "layers", "rank"),
    [
        (list(MODULES), [2, 3], 4),  # every module of the top two layers
        (list(MODULES), [0, 1, 2, 3], 8),  # every layer: the lowest one still skips q/k/v grads
        (["up_proj", "down_proj"], [3], 3),  # MLP only: no attention backward in that layer
        (["o_proj"], [1, 2, 3], 2),  # o_proj only: no q/k/v or score grads in the lowest
    ],
)
def test_lora_counts_what_autograd_computes(modules, layers, rank):
    model, shape = tiny_llama()
    lora = with_lora(model, rank, modules, layers)
    ids = torch.randint(0, 300, (2, 7))
    plan = TrainPlan(len(layers), rank, tuple(modules))
    assert counted(lora, ids) == train_flops(shape, plan, square_stats(2, 7))


def test_replayed_frozen_layers_cost_nothing_and_logits_only_where_asked():
    _, shape = tiny_llama()
    stats = TokenStats.of([5, 3], logit_positions=4)
    assert (stats.tokens, stats.pairs, stats.logit_positions) == (8, 15 + 6, 4)
    computed = train_flops(shape, TrainPlan(1, 4), stats)
    replayed = train_flops(shape, TrainPlan(1, 4, frozen_computed=0.0), stats)
    frozen_forward = 3 * (2 * shape.layer_params * 8 + shape.score_flops(21))
    assert computed - replayed == pytest.approx(frozen_forward)
    everywhere = TokenStats.of([5, 3])
    extra = train_flops(shape, TrainPlan(1, 4), everywhere) - computed
    assert extra == pytest.approx(2 * 2 * shape.head_params * (8 - 4))  # forward and its grad


def test_a_plan_refuses_modules_it_cannot_count():
    with pytest.raises(ValueError, match="c_attn"):
        TrainPlan(2, 8, ("c_attn",))
    with pytest.raises(ValueError, match="Llama-style"):
        ModelShape.from_config({"n_embd": 768})


def test_generation_counts_prefill_and_every_step():
    model, shape = tiny_llama()
    model.eval()
    prompt = torch.tensor([[5]])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape[1] == 7
    assert counter.get_total_flops() == generation_flops(shape, 1, 6)
    # A long prompt: about 2·N per prompt and generated token.
    big = ModelShape.from_config(SMOLLM2_135M)
    assert generation_flops(big, 40, 48) == pytest.approx(2 * big.matmul_params * 88, rel=0.1)


def test_the_peak_is_two_n_cubed_over_the_best_repeat(monkeypatch):
    clock = iter([0.0, 4.0, 10.0, 11.0, 20.0, 22.0])  # repeats of 4 s, 1 s and 2 s
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(clock))
    seen = []
    real = torch.matmul
    monkeypatch.setattr(
        torch, "matmul", lambda a, b: seen.append((torch.get_num_threads(), a.dtype)) or real(a, b)
    )
    before = torch.get_num_threads()
    peak = matmul_peak(torch.bfloat16, threads=1, size=16, repeats=3, onednn=False)
    assert peak == 2 * 16**3 / 1.0
    assert seen == [(1, torch.bfloat16)] * 4  # the warm-up and three timed, on one thread
    assert torch.get_num_threads() == before


def test_the_peak_is_measured_for_real_on_tiny_matrices():
    peak = matmul_peak(torch.float32, threads=1, size=64, repeats=2)
    assert 1e6 < peak < 1e15


def test_the_peak_is_the_faster_of_torch_and_packed_onednn(monkeypatch):
    """On the CPU the packed oneDNN product is timed too, and the faster one counts."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    import types

    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    ops = types.SimpleNamespace(
        _linear_pointwise=lambda *args: calls.append("onednn") or real(*args),
        _reorder_linear_weight=torch.ops.mkldnn._reorder_linear_weight,
    )
    monkeypatch.setattr(torch.ops, "mkldnn", ops)
    clock = iter([0.0, 4.0, 10.0, 12.0, 20.0, 20.5, 30.0, 33.0])  # torch: 4, 2; oneDNN: 0.5, 3
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(clock))
    peak = matmul_peak(torch.float32, threads=1, size=16, repeats=2)
    assert peak == 2 * 16**3 / 0.5
    assert calls == ["onednn"] * 3  # the warm-up and two timed
    with pytest.raises(ValueError, match="positive"):
        matmul_peak(torch.float32, size=0)


@pytest.fixture(scope="module")
def bench_utilization():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench_utilization

        yield bench_utilization
    finally:
        sys.path.remove(str(SCRIPTS))


def test_the_server_utilization_is_its_replies_flops_over_the_level_wall(
    bench_utilization, tiny_model_dir
):
    counter = bench_utilization.ReplyFlops(str(tiny_model_dir))
    reply = {"usage": {"prompt_tokens": 10, "completion_tokens": 4}}
    assert counter.tokens_of(reply) == 4  # the warm-up: not counted
    counter.level = 32
    counter.tokens_of(reply)
    counter.tokens_of(reply)
    one = generation_flops(counter.shape, 10, 4)
    assert counter.by_level == {32: 2 * one}
    results = {"server": [{"concurrency": 32, "wall_s": 2.0}]}
    (row,) = bench_utilization.serve_utilization(results, counter, one, "bfloat16")
    assert row.fraction == pytest.approx(1.0) and row.met  # one reply's FLOPs per second
    assert "(goal >= 30%: met)" in row.line()
    low = bench_utilization.Utilization("server at 32", 0.2e12, 1e12, "float32", 0.3)
    assert not low.met and "20.0% of the 1.0000 TFLOP/s float32 matmul peak" in low.line()
    assert low.to_json()["fraction"] == pytest.approx(0.2)
