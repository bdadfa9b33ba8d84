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


def test_every_config_spells_the_tracking_uri_one_way():
    """train, eval, registry and deploy all take `tracking.uri`; the old spellings are refused."""
    import pytest

    from tuneops.core.errors import UserError
    from tuneops.core.tracking import TrackingConfig
    from workloads.deploy.config import load_deploy_config
    from workloads.evaluate.config import load_eval_config
    from workloads.registry.config import load_registry_config
    from workloads.train.config import load_train_config

    uri = "sqlite:////tmp/one-spelling.db"
    loaders = {
        "train": (load_train_config, "mlflow.tracking_uri"),
        "eval": (load_eval_config, "tracking.tracking_uri"),
        "registry": (load_registry_config, "tracking_uri"),
        "deploy": (lambda **kw: load_deploy_config("dev", **kw), "registry.tracking_uri"),
    }
    for area, (load, old) in loaders.items():
        cfg = load(overrides=[f"tracking.uri={uri}"])
        assert isinstance(cfg.tracking, TrackingConfig), area
        assert cfg.tracking.resolved_uri == uri, area
        with pytest.raises(UserError):
            load(overrides=[f"{old}={uri}"])
