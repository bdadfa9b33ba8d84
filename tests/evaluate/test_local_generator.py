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
