"""Registry fixtures: MLflow runs holding a real (tiny) model and the eval metrics that
`tuneops eval` logs, so the gate can be tested against chosen scores."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from tuneops.core.tracking import use_experiment

DIGEST = "bench-digest-1"


@pytest.fixture
def registry_config(mlflow_uri):
    from workloads.registry.config import load_registry_config

    return load_registry_config(overrides=[f"tracking.uri={mlflow_uri}"])


@pytest.fixture
def client(mlflow_uri):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_uri)
    return MlflowClient(mlflow_uri)


@pytest.fixture
def make_run(client, tiny_model_dir) -> Callable[..., str]:
    """A finished training run with the tiny model at `model/`, training tags and eval scores
    ``{label: {metric: value}}`` logged as `eval.<label>.benchmark.<metric>`."""
    import mlflow

    def make(scores: dict[str, dict[str, float]], *, versions: dict[str, str] | None = None) -> str:
        use_experiment("tuneops-train")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(tiny_model_dir), artifact_path="model")
            mlflow.set_tags(
                {
                    "tuneops.dataset_snapshot": "cloudops/20260101T000000Z-abc",
                    "tuneops.base_model": "embedded:smollm2-135m-instruct",
                    "tuneops.method": "lora",
                    "mlflow.source.git.commit": "0123456789abcdef",
                    "tuneops.eval.benchmark_digest": DIGEST,
                }
            )
            mlflow.log_params({"lora.r": 16, "optim.learning_rate": 2e-4, "data.max_length": 512})
            for label, metrics in scores.items():
                mlflow.set_tag(f"tuneops.eval.{label}.ref", f"ref-of-{label}")
                for metric, value in metrics.items():
                    mlflow.log_metric(f"eval.{label}.benchmark.{metric}", value)
            for label, version in (versions or {}).items():
                mlflow.set_tag(f"tuneops.eval.{label}.version", version)
                mlflow.set_tag(f"tuneops.eval.{label}.ref", "models:/cloudops-assistant@champion")
        return run.info.run_id

    return make


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `tuneops ARGS...` in-process through the real entry point; returns (code, out, err)."""
    from tuneops.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["tuneops", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run
