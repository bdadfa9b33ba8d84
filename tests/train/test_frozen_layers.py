"""Adapters on the top layers only, and the frozen layers below computed once per row: the same
numbers as computing them at every visit, less work, and generation unaffected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from model_helpers import random_llama_dir
from train_helpers import config_for

from workloads.train import run_training
from workloads.train.frozen_layers import (
    FrozenPrefix,
    decoder_layers,
    install_frozen_prefix,
    top_layer_indices,
)


@pytest.fixture(scope="module")
def four_layer_model(tmp_path_factory, embedded_tokenizer_dir) -> Path:
    """A randomly initialised four-layer Llama with the real tokenizer."""
    out = tmp_path_factory.mktemp("four-layers")
    return random_llama_dir(out, embedded_tokenizer_dir, num_hidden_layers=4)


def test_top_layers_are_the_last_ones():
    assert top_layer_indices(30, 8) == list(range(22, 30))
    assert top_layer_indices(30, None) is None
    assert top_layer_indices(4, 4) is None and top_layer_indices(4, 9) is None


def _train(model_dir: Path, snapshot: Path, out: Path, *extra: str):
    cfg = config_for(
        model_dir,
        snapshot,
        out,
        "data.max_length=128",
        "optim.epochs=3",
        "optim.learning_rate=5e-3",
        "lora.top_layers=2",
        "checkpoint.every_steps=0",
        "merge=false",
        "tracking.log_model=false",
        *extra,
    )
    return run_training(cfg)


def _adapter(result) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(result.adapter_dir / "adapter_model.safetensors")


def test_replaying_the_frozen_layers_changes_no_number(four_layer_model, snapshot_dir, tmp_path):
    replayed = _train(four_layer_model, snapshot_dir, tmp_path / "replayed")
    computed = _train(
        four_layer_model, snapshot_dir, tmp_path / "computed", "lora.frozen_cache_mb=0"
    )
    stats = replayed.extra["frozen_layers"]
    assert stats["frozen_layers"] == 2
    # Each row is computed at its first visit and replayed at the next two epochs' visits.
    assert stats["rows_replayed"] > stats["rows_computed"] > 0
    assert computed.extra["frozen_layers"] is None
    weights, again = _adapter(replayed), _adapter(computed)
    assert weights.keys() == again.keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, again[name]), name
    assert replayed.final_loss == computed.final_loss
    assert replayed.extra["eval_history"] == computed.extra["eval_history"]
    # The adapters sit on the top two layers only.
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in weights}
    assert layers == {2, 3}
    config = json.loads((replayed.adapter_dir / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [2, 3]


def test_the_kept_evaluation_is_the_best_one(four_layer_model, snapshot_dir, tmp_path):
    result = _train(
        four_layer_model,
        snapshot_dir,
        tmp_path / "best",
        "eval.every_epoch=true",
        "eval.keep_best=loss",
        "optim.epochs=4",
    )
    history = result.extra["eval_history"]
    assert history[0][0] == 0 and len(history) == 5  # start + 4 epochs
    best_step, best_loss = min(history[1:], key=lambda item: item[1])
    assert result.best_step == best_step
    assert result.eval_loss_after == pytest.approx(best_loss, abs=1e-6)


def test_the_store_serves_training_and_leaves_generation_alone(four_layer_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(four_layer_model)
    plain = AutoModelForCausalLM.from_pretrained(four_layer_model).eval()
    model = AutoModelForCausalLM.from_pretrained(four_layer_model).eval()
    for param in decoder_layers(model)[:2].parameters():
        param.requires_grad_(False)
    prefix = install_frozen_prefix(model, top=2, max_mb=16)
    assert isinstance(prefix, FrozenPrefix) and prefix.frozen == 2
    ids = tokenizer("kubectl rollout undo deployment/web", return_tensors="pt").input_ids
    positions = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        want = plain(input_ids=ids, position_ids=positions, use_cache=False).logits
        first = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        second = model(input_ids=ids, position_ids=positions, use_cache=False).logits
    assert torch.equal(first, want) and torch.equal(second, want)
    assert (prefix.misses, prefix.hits, len(prefix.store)) == (1, 1, 1)
    # Generation (a KV cache) runs the frozen layers as usual and stores nothing.
    greedy = {"max_new_tokens": 8, "do_sample": False}
    assert torch.equal(model.generate(ids, **greedy), plain.generate(ids, **greedy))
    assert len(prefix.store) == 1


def test_the_store_stops_growing_at_its_cap(four_layer_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(four_layer_model).eval()
    layers = decoder_layers(model)
    for param in model.parameters():
        param.requires_grad_(False)
    one_row = 1 * 6 * model.config.hidden_size * 4  # a row of 6 tokens in fp32
    prefix = FrozenPrefix(layers, 2, max_bytes=one_row).install(model.get_input_embeddings())
    with torch.no_grad():
        for start in (10, 20, 10, 20):
            ids = torch.arange(start, start + 6).unsqueeze(0)
            model(input_ids=ids, position_ids=torch.arange(6).unsqueeze(0), use_cache=False)
    assert len(prefix.store) == 1 and prefix.bytes == one_row
    assert (prefix.misses, prefix.hits) == (3, 1)  # the second row is computed at every visit


def test_a_trainable_layer_below_the_adapted_ones_is_refused(four_layer_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(four_layer_model)
    with pytest.raises(ValueError, match="trainable weights"):
        install_frozen_prefix(model, top=2, max_mb=16)


def test_the_development_questions_are_asked_at_every_evaluation(
    four_layer_model, snapshot_dir, tmp_path
):
    """Validation recall (``eval.recall_questions``): logged at the start and at every epoch's
    end, and with ``keep_best: recall`` the weights of its best evaluation are kept."""
    from mlflow import MlflowClient

    questions = tmp_path / "dev.jsonl"
    questions.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"dev-{n}",
                    "question": f"Which command previews infrastructure changes? ({n})",
                    "reference": "terraform plan shows what apply would change.",
                    "key_facts": ["terraform plan", "apply"],
                    "category": "terraform",
                    "difficulty": "easy",
                }
            )
            + "\n"
            for n in range(3)
        )
    )
    result = _train(
        four_layer_model,
        snapshot_dir,
        tmp_path / "recall",
        "eval.every_epoch=true",
        f"eval.recall_questions={questions}",
        "eval.recall_at=every",
        "eval.keep_best=recall",
        "optim.epochs=2",
    )
    recall = result.extra["recall_history"]
    assert [step for step, _ in recall] == [step for step, _ in result.extra["eval_history"]]
    assert len(recall) == 3 and all(0.0 <= value <= 1.0 for _, value in recall)
    best = max(recall[1:], key=lambda item: item[1])  # the first of equals, as transformers
    assert result.best_step == best[0]
    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
        result.run_id, "eval_key_fact_recall"
    )
    assert [m.value for m in history] == [value for _, value in recall]


def test_the_development_questions_asked_once_at_the_end(four_layer_model, snapshot_dir, tmp_path):
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM

    from workloads.train.recall import RecallProbe

    questions = tmp_path / "dev.jsonl"
    questions.write_text(
        json.dumps(
            {
                "id": "dev-1",
                "question": "Which command previews infrastructure changes?",
                "reference": "terraform plan shows what apply would change.",
                "key_facts": ["terraform plan", "apply"],
                "category": "terraform",
                "difficulty": "easy",
            }
        )
        + "\n"
    )
    result = _train(
        four_layer_model,
        snapshot_dir,
        tmp_path / "end",
        "eval.every_epoch=true",
        f"eval.recall_questions={questions}",
        "optim.epochs=2",
        "merge=true",
        "precision=fp32",
    )
    ((step, value),) = result.extra["recall_history"]
    assert step == result.global_step and 0.0 <= value <= 1.0
    logged = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(
        result.run_id, "eval_key_fact_recall"
    )
    assert [(m.step, m.value) for m in logged] == [(step, value)]
    # Asked of the merged model as evaluation loads it (from its folder, Linear weights
    # prepacked): the same answers as that model in memory, and the recall logged.
    probe = RecallProbe(str(questions), None, result.merged_dir, "fp32")
    saved = probe.saved_answers(result.merged_dir)
    in_memory = AutoModelForCausalLM.from_pretrained(result.merged_dir, dtype=torch.float32)
    assert any(answer.text for answer in saved)
    assert [a.text for a in saved] == [a.text for a in probe.answers(in_memory)]
    assert probe.ask_saved(result.merged_dir)["eval_key_fact_recall"] == value


def test_the_thread_policy_holds_from_the_first_evaluation(
    four_layer_model, snapshot_dir, tmp_path, monkeypatch
):
    """``threads``: the count asked for applies to the validation loss taken before the first
    step too, and the count is given back at the end."""
    from workloads.train.sft_trainer import CountingSFTTrainer

    seen: list[int] = []
    real = CountingSFTTrainer.evaluate

    def counted(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(CountingSFTTrainer, "evaluate", counted)
    before = torch.get_num_threads()
    if before < 2:
        torch.set_num_threads(2)
    default = torch.get_num_threads()
    try:
        cfg = config_for(
            four_layer_model,
            snapshot_dir,
            tmp_path / "threads",
            "data.max_length=128",
            "optim.max_steps=2",
            "lora.top_layers=2",
            "checkpoint.every_steps=0",
            "merge=false",
            "tracking.log_model=false",
        )
        run_training(cfg, threads=lambda: 1)
        assert seen and seen[0] == 1  # eval_on_start, before any step
        assert torch.get_num_threads() == default
    finally:
        torch.set_num_threads(before)
