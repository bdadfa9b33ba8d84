"""Where an evaluation's numbers go in MLflow: metrics, tags and the report on one run.

Metric keys are ``eval.<label>.<split>[.category.<c>|.difficulty.<d>].<metric>``; the registry's
promotion gate reads them back. Metrics use the client's batch API, so a finished training run
can be evaluated again (the latest value of each key wins) and its status is left alone.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from tuneops.core.tracking import use_experiment
from workloads.evaluate.config import EvalConfig
from workloads.evaluate.results import EvalResult, ModelEval
from workloads.models.registry import registry_client

BATCH = 900  # metrics per log_batch call (MLflow accepts at most 1000)


def tracking_uri(config: EvalConfig) -> str:
    return config.tracking.resolved_uri


def mlflow_client(config: EvalConfig) -> Any:
    """A client for the config's tracking store, also made the active store for ``mlflow``."""
    import mlflow

    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    return registry_client(uri)


def new_run(client: Any, config: EvalConfig, model: str) -> str:
    """A finished run in the eval experiment, for a candidate that has no run of its own."""
    experiment = use_experiment(config.tracking.experiment)
    name = f"eval-{re.sub(r'[^A-Za-z0-9_.-]+', '-', model)[-60:]}"
    run_id = client.create_run(experiment.experiment_id, run_name=name).info.run_id
    client.set_terminated(run_id)
    return run_id


def flatten_metrics(model: ModelEval, role: str) -> dict[str, float]:
    """MLflow metric keys: ``eval.<role>.<split>[.category.<c>|.difficulty.<d>].<metric>``."""
    out: dict[str, float] = {}
    for split, groups in model.aggregates.items():
        prefix = f"eval.{role}.{split}"
        for metric, value in groups["overall"].items():
            if value is not None:
                out[f"{prefix}.{metric}"] = float(value)
        for kind in ("category", "difficulty"):
            for key, row in groups[kind].items():
                safe = re.sub(r"[^A-Za-z0-9_-]", "_", str(key))
                for metric, value in row.items():
                    if value is not None:
                        out[f"{prefix}.{kind}.{safe}.{metric}"] = float(value)
    return out


def run_tags(result: EvalResult, config: EvalConfig) -> dict[str, str]:
    tags = {
        "tuneops.eval.benchmark_digest": result.benchmark_digest or "",
        "tuneops.eval.splits": ",".join(result.splits),
        "tuneops.eval.judge_prompt": result.judge_prompt or "",
        "tuneops.eval.primary_metric": config.report.primary_metric,
        "tuneops.eval.finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tuneops.eval.models": ",".join(m.label for m in result.models),
    }
    for model in result.models:
        tags[f"tuneops.eval.{model.label}.ref"] = model.ref
        tags[f"tuneops.eval.{model.label}.version"] = model.version or ""
    return tags


def log_result(client: Any, result: EvalResult, config: EvalConfig) -> None:
    """Every model's metrics, the run tags and the report directory, on ``result.run_id``."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics: dict[str, float] = {}
    for model in result.models:
        metrics.update(flatten_metrics(model, model.label))
    items = [Metric(k, v, now, 0) for k, v in sorted(metrics.items())]
    for start in range(0, len(items), BATCH):
        client.log_batch(result.run_id, metrics=items[start : start + BATCH])
    tags = run_tags(result, config)
    client.log_batch(result.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_artifacts(result.run_id, str(result.output_dir), artifact_path="eval")
