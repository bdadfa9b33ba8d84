"""Tracking a run after it trained: for a training that starts before its MLflow server exists.

``run_training(cfg, track_later=True)`` trains with a ``BufferedTracker``: every metric the
trainer logs is kept in memory with its step and wall-clock time, and nothing is sent. The
result then carries a ``PendingRun``; ``publish(tracking_uri)`` opens the MLflow run with the
training's own start time and logs exactly what a tracked run logs (params, tags, datasets,
config, every metric at its step and time, loss curve, adapter, merged model). The demo trains
this way while the local infrastructure that hosts its MLflow server is still being applied.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tuneops.core.io import atomic_write_json

if TYPE_CHECKING:
    from workloads.train.runs import TrainRun
    from workloads.train.trainer import TrainResult

BATCH = 1000  # metrics per request (MLflow's limit for log_batch)


def metric_values(logs: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of one trainer log line, named as MLflow gets them."""
    metrics = {}
    for key, value in logs.items():
        if isinstance(value, int | float) and math.isfinite(value):
            name = "learning_rate" if key in ("lr", "learning_rate") else key
            metrics[name.replace("/", "_")] = float(value)
    return metrics


@dataclass
class BufferedTracker:
    """Takes the trainer's metrics like ``tracking.Tracker`` and keeps them for later."""

    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    entries: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    run_id: str | None = None
    live = False  # nothing reaches MLflow until ``PendingRun.publish``

    def log_metrics(self, logs: dict[str, Any], step: int) -> None:
        metrics = metric_values(logs)
        if metrics:
            self.entries.append((step, int(time.time() * 1000), metrics))

    def close(self, status: str = "FINISHED") -> None:
        """Nothing is open yet."""


@dataclass
class PendingRun:
    """A finished training whose MLflow run is still to be written."""

    run: TrainRun
    result: TrainResult
    buffer: BufferedTracker

    def publish(self, tracking_uri: str) -> str:
        """Log the whole run to ``tracking_uri``; its run id (also in ``run_state.json`` and
        ``result.json``)."""
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        from workloads.train import tracking

        run = self.run
        cfg = run.cfg.model_copy(deep=True)
        cfg.tracking.uri = tracking_uri
        run.cfg = cfg
        tracker = tracking.Tracker(cfg, run.run_name, None, start_time=self.buffer.started_ms)
        run.tracker = tracker
        try:
            tracking.log_run_start(run)
            metrics = [
                Metric(key, value, stamp, step)
                for step, stamp, values in self.buffer.entries
                for key, value in values.items()
            ]
            client = MlflowClient(tracking_uri)
            for start in range(0, len(metrics), BATCH):
                client.log_batch(tracker.run_id, metrics=metrics[start : start + BATCH])
            self.result.run_id = tracker.run_id
            tracking.log_run_end(run, self.result)
        except BaseException:
            tracker.close("FAILED")
            raise
        tracker.close()
        state = {"run_id": tracker.run_id, "run_name": run.run_name}
        state["dataset"] = str(run.snapshot.path)
        atomic_write_json(run.out_dir / "run_state.json", state)
        atomic_write_json(run.out_dir / "result.json", self.result.to_json())
        return tracker.run_id
