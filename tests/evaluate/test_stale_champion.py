"""Evaluating ``models:/name@champion`` after a promotion loads the new champion's weights and
labels them with its version: the alias is pinned once, and that pin is what is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneops.core.tracking import use_experiment

BENCH = Path(__file__).parent / "data" / "bench_small.jsonl"
NAME = "cloudops-assistant"
CHAMPION = f"models:/{NAME}@champion"


@pytest.fixture
def other_tiny_model_dir(tmp_path, tiny_model_dir) -> Path:
    """The tiny model's shape and tokenizer with other random weights, large enough to say
    words (the tiny model's small ones echo the prompt's last token, a newline)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(1)
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 1.0
    model = LlamaForCausalLM(config)
    out = tmp_path / "tiny-model-2"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


class Registry:
    """Registers model folders as versions of one model and moves its champion alias."""

    def __init__(self, mlflow_uri: str) -> None:
        from mlflow import MlflowClient

        from workloads.registry.config import load_registry_config

        self.uri = mlflow_uri
        self.config = load_registry_config(overrides=[f"tracking.uri={mlflow_uri}"])
        self.client = MlflowClient(mlflow_uri)

    def register(self, model_dir: Path) -> str:
        import mlflow

        from workloads.registry.registry import register

        use_experiment("tuneops-train", self.uri)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), artifact_path="model")
        return register(self.config, run.info.run_id, client=self.client).version

    def promote(self, version: str) -> None:
        # What `tuneops promote` does once the gate holds.
        self.client.set_registered_model_alias(NAME, "champion", version)


@pytest.fixture
def registry(tmp_path, monkeypatch, mlflow_uri) -> Registry:
    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))  # resolved copies
    return Registry(mlflow_uri)


def _eval_champion(mlflow_uri: str, out: Path, v1: Path, v2: Path, **kwargs):
    """Evaluate the champion alias beside both versions' weights loaded from their folders."""
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.runner import run_eval

    cfg = load_eval_config(
        overrides=[
            f"benchmark={BENCH}",
            "splits=[benchmark]",
            "generation.max_new_tokens=8",
            "generation.batch_size=8",
            "generation.dtype=float32",
            f"tracking.uri={mlflow_uri}",
        ]
    )
    return run_eval(cfg, CHAMPION, {"v1": str(v1), "v2": str(v2)}, output_dir=out, **kwargs)


def _answers(model) -> list[str]:
    return [r["answer"] for r in model.records]


def test_eval_after_a_promotion_loads_and_labels_the_new_champion(
    tmp_path, mlflow_uri, registry, tiny_model_dir, other_tiny_model_dir
):
    from mlflow import MlflowClient

    v1_dir, v2_dir = tiny_model_dir, other_tiny_model_dir
    registry.promote(registry.register(v1_dir))
    first = _eval_champion(mlflow_uri, tmp_path / "first", v1_dir, v2_dir)
    assert first.candidate.version == "1"
    assert _answers(first.candidate) == _answers(first.baselines[0])

    # A new champion with other weights; the alias was resolved (and cached) before.
    assert registry.register(v2_dir) == "2"
    registry.promote("2")
    second = _eval_champion(mlflow_uri, tmp_path / "second", v1_dir, v2_dir)
    v1_answers, v2_answers = (_answers(b) for b in second.baselines)
    assert v1_answers != v2_answers, "the two versions must answer differently"
    assert second.candidate.version == "2"
    assert _answers(second.candidate) == v2_answers
    assert f"- candidate: `{CHAMPION}` (version 2)" in (tmp_path / "second/report.md").read_text()
    tags = MlflowClient(mlflow_uri).get_run(second.run_id).data.tags
    assert tags["tuneops.eval.candidate.version"] == "2"
    assert tags["tuneops.eval.candidate.ref"] == CHAMPION


def test_a_promotion_during_the_eval_does_not_split_label_and_weights(
    tmp_path, monkeypatch, mlflow_uri, registry, tiny_model_dir, other_tiny_model_dir
):
    import workloads.models.load as load

    v1_dir, v2_dir = tiny_model_dir, other_tiny_model_dir
    registry.promote(registry.register(v1_dir))
    registry.register(v2_dir)
    resolve = load.resolve_model

    def promote_then_resolve(ref, **kwargs):
        registry.promote("2")  # lands after the eval looked the alias up, before it loads
        return resolve(ref, **kwargs)

    monkeypatch.setattr(load, "resolve_model", promote_then_resolve)
    result = _eval_champion(mlflow_uri, tmp_path / "out", v1_dir, v2_dir, log_to_mlflow=False)
    v1_answers, v2_answers = (_answers(b) for b in result.baselines)
    assert v1_answers != v2_answers
    # Labelled version 1 (the champion when the eval began) and version 1's weights.
    assert result.candidate.version == "1"
    assert _answers(result.candidate) == v1_answers
