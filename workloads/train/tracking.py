"""The MLflow run of one training (rank 0 only): params, tags, datasets, metrics, artifacts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneops.core.gitmeta import git_commit
from tuneops.core.tracking import use_experiment
from workloads.train.config import TrainConfig, to_yaml
from workloads.train.metric_outbox import MetricOutbox, quick_requests, transient
from workloads.train.track_later import metric_values

if TYPE_CHECKING:
    from workloads.train.runs import TrainRun
    from workloads.train.trainer import TrainResult

log = logging.getLogger(__name__)


class Tracker:
    """The MLflow run of one training (rank 0 only). Per-step metrics go through a
    ``MetricOutbox``: a tracking server that stops answering for a while costs no step and no
    metric (``workloads/train/metric_outbox.py``)."""

    live = True  # metrics go to MLflow as they come (track_later.BufferedTracker keeps them)

    def __init__(
        self, cfg: TrainConfig, run_name: str, run_id: str | None, start_time: int | None = None
    ):
        import mlflow

        self.mlflow = mlflow
        uri = cfg.tracking.resolved_uri
        experiment = use_experiment(cfg.tracking.experiment, uri)
        if run_id is None and start_time is not None:  # a run tracked after it trained
            client = mlflow.MlflowClient(uri)
            created = client.create_run(
                experiment.experiment_id, start_time=start_time, run_name=run_name
            )
            run_id = created.info.run_id
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        self.run_id = self.run.info.run_id
        self.run_name = run_name
        self.out_dir: Path | None = None  # where unsent metrics go (set by log_run_start)
        self.outbox = MetricOutbox(mlflow.MlflowClient(uri), self.run_id, uri, cfg.tracking.retry)
        self.gave_up = False

    def log_metrics(self, logs: dict[str, Any], step: int) -> None:
        metrics = metric_values(logs)
        if metrics:
            self.outbox.add(metrics, step)

    def flush(self) -> None:
        """Every pending metric sent, waiting for the server up to ``tracking.retry.final_wait_s``;
        else they are saved in the run's directory and ``TrackingUnavailable`` says where."""
        wait = self.outbox.retry.final_wait_s
        if not self.outbox.drain(wait):
            self.gave_up = True
            raise self.outbox.give_up(self.run_name, self.out_dir, wait)

    def close(self, status: str = "FINISHED") -> None:
        """End the run with ``status``. A failing run does not wait for the server: what it
        cannot send is saved, one warning line says where, and its own error is the one shown."""
        if status == "FINISHED" and not self.gave_up:
            self.flush()
            self.mlflow.end_run(status=status)
            return
        if not self.gave_up and not self.outbox.send():
            log.warning("%s", self.outbox.give_up(self.run_name, self.out_dir, 0))
            self.gave_up = True
        try:
            with quick_requests(self.outbox.retry.request_timeout_s):
                self.mlflow.end_run(status=status)
        except Exception as exc:  # the server is away: the run stays open there
            if not transient(exc):
                raise


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
    run.tracker.out_dir = run.out_dir
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
    """Final metrics, the loss curve, the adapter, skipped records and the merged model; first
    every metric still pending is sent (``Tracker.flush`` waits for a server that is away)."""
    mlflow, out_dir = run.tracker.mlflow, run.out_dir
    run.tracker.out_dir = out_dir
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
    run.tracker.log_metrics(final, step=result.global_step)
    run.tracker.flush()
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
