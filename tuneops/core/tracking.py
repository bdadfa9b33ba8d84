"""MLflow experiments the project's way: a SQLite store keeps its artifacts beside itself.

MLflow gives an experiment created on a ``sqlite:///`` store the artifact location
``./mlruns``, relative to whatever directory the process runs in, so runs logged from the
repository root would scatter model files there. Every experiment the project creates goes
through ``use_experiment``, which puts them in ``mlartifacts/`` next to the database instead.
A tracking server (and any other store) keeps its own default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneops.core.config import StrictModel
from tuneops.core.paths import default_tracking_uri


class TrackingConfig(StrictModel):
    """Where runs and the model registry live. Every config spells it the same way,
    ``tracking.uri`` (``--set tracking.uri=http://...``); null is ``MLFLOW_TRACKING_URI``,
    else the SQLite store under the cache."""

    uri: str | None = None

    @property
    def resolved_uri(self) -> str:
        return self.uri or default_tracking_uri()


def artifact_root(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go for this store; None leaves MLflow's default."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return None


def use_experiment(name: str, tracking_uri: str | None = None) -> Any:
    """Make ``name`` the active experiment, creating it first if needed; returns it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(name) is None:
        try:
            mlflow.create_experiment(
                name, artifact_location=artifact_root(mlflow.get_tracking_uri())
            )
        except MlflowException:
            # Another process created it in between; set_experiment below finds it.
            if mlflow.get_experiment_by_name(name) is None:
                raise
    return mlflow.set_experiment(name)
