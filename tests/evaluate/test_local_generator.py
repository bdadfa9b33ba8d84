"""Local evaluation generation: prepacked weights change the speed, never the answers."""

from __future__ import annotations

import pytest
import torch

from workloads.evaluate.config import GenerationConfig
from workloads.evaluate.generate import LocalGenerator, balanced_batches
from workloads.models.prepack import PackedLinear

QUESTIONS = [
    [{"role": "user", "content": "How do I roll back a Deployment?"}],
    [{"role": "user", "content": "What is a Helm values file used for, and where does it live?"}],
    [{"role": "user", "content": "hi"}],
]


def test_prepacked_generator_gives_the_same_answers(tiny_model_dir):
    def generator(prepack: bool) -> LocalGenerator:
        cfg = GenerationConfig(
            max_new_tokens=12, batch_size=2, dtype="float32", cpu_prepack=prepack
        )
        return LocalGenerator(str(tiny_model_dir), cfg)

    plain, packed = generator(False), generator(True)
    assert any(type(m) is torch.nn.Linear for m in plain.model.modules())
    assert not any(type(m) is torch.nn.Linear for m in packed.model.modules())
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    want = plain.generate(QUESTIONS)
    got = packed.generate(QUESTIONS)
    assert [g.text for g in got] == [g.text for g in want]
    assert [g.answer_tokens for g in got] == [g.answer_tokens for g in want]
    assert all(g.answer_tokens for g in got)  # random weights still say something


@pytest.mark.parametrize(
    ("n", "size", "sizes"),
    [(136, 64, [46, 45, 45]), (136, 16, [16] + [15] * 8), (10, 64, [10]), (0, 4, [])],
)
def test_batches_are_as_few_as_the_size_allows_and_even(n, size, sizes):
    batches = balanced_batches(list(range(n)), size)
    assert [len(b) for b in batches] == sizes
    assert [i for b in batches for i in b] == list(range(n))  # every prompt once, in order


def test_the_engine_answers_as_generate_does(embedded_model_dir, monkeypatch):
    """Answers that end leave the engine's batch; the answers, their token counts and whether
    they ended are still what transformers' generate() gives for the same batch."""
    prompts = [
        [{"role": "user", "content": "Say hello."}],
        [{"role": "user", "content": "Reply with one word: is YAML a markup language?"}],
        *QUESTIONS,
    ]
    cfg = GenerationConfig(max_new_tokens=20, dtype="float32", cpu_prepack=False)
    generator = LocalGenerator(str(embedded_model_dir), cfg)
    calls: list[str] = []
    for name in ("_engine_batch", "_hf_batch"):
        method = getattr(generator, name)
        monkeypatch.setattr(
            generator, name, lambda p, progress, m=method, n=name: calls.append(n) or m(p, progress)
        )
    ended: list[int] = []
    by_engine = generator.generate(prompts, progress=ended.append)
    generator.config = cfg.model_copy(update={"repetition_penalty": 1.0 + 1e-6})
    by_generate = generator.generate(prompts)
    assert calls == ["_engine_batch", "_hf_batch"]  # a repetition penalty goes to generate()
    assert sum(ended) == len(prompts)

    def seen(gens):
        return [(g.text, g.answer_tokens, g.finished) for g in gens]

    assert seen(by_engine) == seen(by_generate)
    assert {g.finished for g in by_engine} == {True, False}  # some ended early, some ran out
    ended_early = [g.latency_s for g in by_engine if g.finished]
    ran_out = [g.latency_s for g in by_engine if not g.finished]
    assert max(ended_early) <= min(ran_out)  # an answer's latency ends when the answer does
