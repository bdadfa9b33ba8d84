"""The MLflow run of one training (rank 0 only): params, tags, datasets, metrics, artifacts."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneops.core.gitmeta import git_commit
from tuneops.core.tracking import use_experiment
from workloads.train.config import TrainConfig, to_yaml

if TYPE_CHECKING:
    from workloads.train.runs import TrainRun
    from workloads.train.trainer import TrainResult


class Tracker:
    """The MLflow run of one training (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, run_name: str, run_id: str | None):
        import mlflow

        self.mlflow = mlflow
        use_experiment(cfg.tracking.experiment, cfg.tracking.resolved_uri)
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        self.run_id = self.run.info.run_id

    def log_metrics(self, logs: dict[str, Any], step: int) -> None:
        metrics = {}
        for key, value in logs.items():
            if isinstance(value, int | float) and math.isfinite(value):
                name = "learning_rate" if key in ("lr", "learning_rate") else key
                metrics[name.replace("/", "_")] = float(value)
        if metrics:
            self.mlflow.log_metrics(metrics, step=step)

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value if not isinstance(value, list) else ",".join(map(str, value))
    return out


def log_dataset(mlflow, snapshot, rows: list[dict], context: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"messages": json.dumps(r["messages"], ensure_ascii=False)}
            if "messages" in r
            else {"text": r["text"]}
            for r in rows
        ]
    )
    dataset = mlflow.data.from_pandas(
        frame, source=str(snapshot.path), name=f"{snapshot.name}@{snapshot.id}"
    )
    mlflow.log_input(dataset, context=context)


def log_run_start(run: TrainRun) -> None:
    """Params and datasets (not again on resume), the resolved config, and the run's tags."""
    mlflow, cfg, splits = run.tracker.mlflow, run.cfg, run.splits
    resolved = cfg.model_dump(mode="json")
    if not run.resume_from:
        params = flatten("", resolved, {})
        params.update(
            {
                "resolved_precision": run.precision.short,
                "precision_reason": run.precision.reason,
                "world_size": run.world,
                "train_examples": len(splits.train),
                "validation_examples": len(splits.validation),
                "skipped_records": len(splits.skipped),
                "model_dir": str(run.model_dir),
            }
        )
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        log_dataset(mlflow, run.snapshot, splits.train, "training")
        if splits.validation:
            log_dataset(mlflow, run.snapshot, splits.validation, "validation")
    mlflow.log_text(to_yaml(cfg), "config/train.yaml")
    tags = {
        "tuneops.dataset_snapshot": f"{run.snapshot.name}/{run.snapshot.id}",
        "tuneops.base_model": cfg.base_model,
        "tuneops.method": cfg.method,
        "tuneops.world_size": str(run.world),
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if run.config_source:
        tags["tuneops.config"] = run.config_source
    mlflow.set_tags(tags)


def log_run_end(run: TrainRun, result: TrainResult) -> None:
    """Final metrics, the loss curve, the adapter, skipped records and the merged model."""
    mlflow, out_dir = run.tracker.mlflow, run.out_dir
    final = {
        "train_seconds": result.train_seconds,
        "train_examples_per_s": result.examples_per_s,
        "train_tokens_per_s": result.tokens_per_s,
        "rank_divergence": result.extra["rank_divergence"],
    }
    if result.eval_loss_after is not None:
        final["final_eval_loss"] = result.eval_loss_after
    if result.eval_loss_before is not None:
        final["initial_eval_loss"] = result.eval_loss_before
    mlflow.log_metrics(final, step=result.global_step)
    mlflow.log_artifact(str(out_dir / "loss_curve.png"))
    mlflow.log_artifacts(str(run.adapter_dir), "adapter")
    if run.splits.skipped:
        mlflow.log_artifact(str(out_dir / "skipped.jsonl"))
    if run.merged_dir is not None and run.cfg.tracking.log_model:
        log_merged_model(run.merged_dir)


def log_merged_model(merged_dir: Path) -> None:
    """The merged model as the run's ``model`` (what ``runs:/<id>/model`` resolves to)."""
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation",
        pip_requirements=["transformers", "torch", "accelerate"],
    )
