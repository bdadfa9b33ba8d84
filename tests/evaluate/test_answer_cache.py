"""An embedded model's answers are computed once per prompts and settings, then reused; models
that can change (a directory, a run, a registry version) are always asked again."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).parent / "data" / "bench_small.jsonl"
EMBEDDED = "embedded:smollm2-135m-instruct"


@pytest.fixture
def answers_dir(tmp_path, monkeypatch, embedded_model_dir) -> Path:
    from workloads.evaluate import answer_cache

    monkeypatch.setattr(answer_cache, "cache_dir", lambda: tmp_path)
    return tmp_path / "eval" / "answers"


def _eval(tiny_model_dir, out: Path, *extra: str):
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.runner import run_eval

    config = load_eval_config(
        overrides=[
            f"benchmark={BENCH}",
            "benchmark_limit=3",
            "splits=[benchmark]",
            "generation.max_new_tokens=6",
            *extra,
        ]
    )
    return run_eval(
        config, str(tiny_model_dir), {"base": EMBEDDED}, output_dir=out, log_to_mlflow=False
    )


def _answers(model) -> list[tuple[str, int, bool]]:
    return [(r["answer"], r["answer_tokens"], r["finished"]) for r in model.records]


def test_the_base_models_answers_are_computed_once(tiny_model_dir, tmp_path, answers_dir):
    first = _eval(tiny_model_dir, tmp_path / "first")
    assert len(list(answers_dir.glob("*.json"))) == 1  # the base's; the directory is not kept
    assert not any("reused" in note for note in first.notes)

    second = _eval(tiny_model_dir, tmp_path / "second")
    (note,) = [n for n in second.notes if "reused" in n]
    assert note.startswith("base: answers reused from")
    base_first, base_second = first.baselines[0], second.baselines[0]
    assert _answers(base_second) == _answers(base_first)
    assert (base_second.dtype, base_second.precision_reason) == (
        base_first.dtype,
        base_first.precision_reason,
    )
    assert base_second.aggregates == base_first.aggregates
    # The candidate, a directory, was generated again (and says nothing of a cache).
    assert _answers(second.candidate) == _answers(first.candidate)


def test_anything_that_changes_answers_is_a_miss(tiny_model_dir, tmp_path, answers_dir):
    _eval(tiny_model_dir, tmp_path / "a")
    longer = _eval(tiny_model_dir, tmp_path / "b", "generation.max_new_tokens=7")
    assert not any("reused" in note for note in longer.notes)
    fewer = _eval(tiny_model_dir, tmp_path / "c", "benchmark_limit=2")
    assert not any("reused" in note for note in fewer.notes)
    assert len(list(answers_dir.glob("*.json"))) == 3
    off = _eval(tiny_model_dir, tmp_path / "d", "generation.answer_cache=false")
    assert not any("reused" in note for note in off.notes)


def test_only_embedded_references_are_cached(tiny_model_dir):
    from workloads.evaluate.answer_cache import AnswerCache
    from workloads.evaluate.config import GenerationConfig

    config = GenerationConfig()
    prompts = [[{"role": "user", "content": "hi"}]]
    for ref in (str(tiny_model_dir), "models:/m/1", "runs:/abc/model", "http://x/openai/v1"):
        assert AnswerCache.for_model(ref, config, prompts) is None, ref
