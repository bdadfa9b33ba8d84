"""Experiments created on a SQLite store keep their artifacts beside the database."""

from __future__ import annotations

from pathlib import Path

from tuneops.core.tracking import artifact_root, use_experiment


def test_sqlite_experiment_artifacts_live_beside_the_database(mlflow_uri, tmp_path, monkeypatch):
    import mlflow

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's own default would write ./mlruns here
    experiment = use_experiment("tracking-test", mlflow_uri)
    with mlflow.start_run() as run:
        mlflow.log_text("hello", "note.txt")
    assert experiment.artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "note.txt"
    assert stored.read_text() == "hello"
    assert not (elsewhere / "mlruns").exists()
    # A second call finds the same experiment instead of failing on the name.
    assert use_experiment("tracking-test").experiment_id == experiment.experiment_id


def test_servers_keep_their_own_artifact_default():
    assert artifact_root("http://127.0.0.1:5000") is None
    assert artifact_root("postgresql://u@127.0.0.1/mlflow") is None
    assert artifact_root("sqlite:////data/mlflow.db") == "file:///data/mlartifacts"
