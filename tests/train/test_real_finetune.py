"""A short real fine-tune of the embedded SmolLM2-135M-Instruct: validation loss drops, the MLflow
run reads back complete, the logged model loads with mlflow.transformers and through
``resolve_model("runs:/<id>/model")``, and the fine-tuned model ends its answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import config_for

from workloads.train import run_training


def _assert_run_is_complete(result, mlflow_uri: str, model_dir: Path, db_dir: Path) -> None:
    """The MLflow run reads back with everything contract 3 promises."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["method"] == "lora" and run.data.params["lora.r"] == "64"
    assert run.data.params["resolved_precision"] == result.extra["precision"]
    assert run.data.params["precision_reason"] == result.extra["precision_reason"]
    assert run.data.tags["tuneops.dataset_snapshot"] == "testset/snap1"
    assert run.data.tags["tuneops.base_model"] == str(model_dir)
    assert run.data.tags["tuneops.method"] == "lora"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    for metric in ("loss", "learning_rate", "tokens_per_s", "examples_per_s", "eval_loss"):
        assert client.get_metric_history(result.run_id, metric), metric
    losses = client.get_metric_history(result.run_id, "loss")
    assert len(losses) == result.global_step
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"loss_curve.png", "adapter", "config"} <= artifacts
    assert len(run.outputs.model_outputs) == 1  # the merged model, as an MLflow logged model
    # A SQLite store keeps its artifacts beside the database.
    assert run.info.artifact_uri.startswith((db_dir / "mlartifacts").as_uri())
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["testset@snap1"] * 2


def _assert_it_ends_its_answer(model, tokenizer, snapshot_dir: Path) -> None:
    """The fine-tuned model ends its answer with <|im_end|> well within the token budget."""
    import torch

    record = snapshot_dir / "train.jsonl"
    messages = json.loads(record.read_text().splitlines()[0])["messages"][:-1]
    prompt = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    budget = 64
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=budget, do_sample=False)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in new and len(new) < budget, tokenizer.decode(new)
    answer = tokenizer.decode(new[: new.index(im_end)])
    # The trained short answer style ("<answer>. Case <n> noted."), not the base model's essay.
    assert "case 0" in answer.lower() and len(new) < 24, answer


@pytest.mark.e2e
def test_short_real_finetune_learns_logs_and_loads(
    embedded_model_dir, snapshot_dir, tmp_path, mlflow_uri, monkeypatch
):
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workloads.models import resolve_model

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config_for(
        embedded_model_dir,
        snapshot_dir,
        tmp_path / "run",
        f"tracking.uri={mlflow_uri}",
        "optim.epochs=2",
        "optim.learning_rate=1e-3",
        "checkpoint.every_steps=0",
    )
    result = run_training(cfg)

    # It learned: validation loss on held-out records of the same style drops clearly.
    assert result.eval_loss_after < result.eval_loss_before * 0.8
    assert (result.merged_dir / "config.json").is_file()
    assert (result.adapter_dir / "adapter_config.json").is_file()
    _assert_run_is_complete(result, mlflow_uri, embedded_model_dir, tmp_path)

    # The logged model loads back with MLflow's transformers flavour...
    parts = mlflow.transformers.load_model(f"runs:/{result.run_id}/model", return_type="components")
    assert parts["model"].config.num_hidden_layers == 30
    # ...and through the project's resolver, as serving and evaluation load it.
    resolved = resolve_model(f"runs:/{result.run_id}/model")
    model = AutoModelForCausalLM.from_pretrained(resolved).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    assert "{% generation %}" not in tokenizer.chat_template  # the user-facing template
    _assert_it_ends_its_answer(model, tokenizer, snapshot_dir)


def test_a_run_tracked_later_logs_what_a_tracked_run_logs(
    tiny_model_dir, snapshot_dir, tmp_path, mlflow_uri
):
    """Trained before any MLflow server exists, then published: the same run, complete."""
    from mlflow import MlflowClient

    cfg = config_for(
        tiny_model_dir,
        snapshot_dir,
        tmp_path / "run",
        f"tracking.uri=sqlite:///{tmp_path / 'unused.db'}",
        "optim.max_steps=6",
        "checkpoint.every_steps=0",
    )
    result = run_training(cfg, track_later=True)
    assert result.run_id is None and result.pending is not None
    assert not (tmp_path / "unused.db").exists()  # nothing was tracked meanwhile
    buffered = result.pending.buffer
    run_id = result.pending.publish(mlflow_uri)
    assert result.run_id == run_id
    _assert_run_is_complete(result, mlflow_uri, tiny_model_dir, tmp_path)
    client = MlflowClient(mlflow_uri)
    run = client.get_run(run_id)
    assert run.info.start_time == buffered.started_ms
    assert run.data.tags["mlflow.runName"] == result.run_name
    losses = client.get_metric_history(run_id, "loss")
    kept = [(step, values["loss"]) for step, _, values in buffered.entries if "loss" in values]
    assert sorted((m.step, m.value) for m in losses) == kept
    state = json.loads((result.output_dir / "run_state.json").read_text())
    assert state["run_id"] == run_id
    assert json.loads((result.output_dir / "result.json").read_text())["run_id"] == run_id
