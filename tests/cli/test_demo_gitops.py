"""The demo step renders dev's manifests for the registered model into the cache."""

from __future__ import annotations

import yaml

from tuneops.cli.demo.state import DemoState
from tuneops.cli.demo.steps import gitops


def test_demo_step_renders_the_champion(tmp_path, monkeypatch, mlflow_uri):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    state = DemoState(
        tracking_uri=mlflow_uri, artifacts_destination="s3://tuneops-local-artifacts/mlflow"
    )
    after = gitops.run(state)  # nothing registered yet: says so, renders nothing
    assert "not rendered" in after.report[-1] and after.gitops_dir is None

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.create_registered_model("cloudops-assistant")
    version = client.create_model_version(
        "cloudops-assistant", source="mlflow-artifacts:/1/models/m-abc/artifacts"
    )
    client.set_registered_model_alias("cloudops-assistant", "champion", version.version)
    after = gitops.run(state)
    out = tmp_path / "cache" / "demo" / "gitops" / "envs" / "dev"
    assert after.gitops_dir == out
    isvc = yaml.safe_load((out / "serving" / "inferenceservice.yaml").read_text())
    env = {e["name"]: e.get("value") for e in isvc["spec"]["predictor"]["containers"][0]["env"]}
    # The registry's proxied artifact URI maps onto the bucket behind the tracking server.
    assert env["STORAGE_URI"] == "s3://tuneops-local-artifacts/mlflow/1/models/m-abc/artifacts"
    assert "cloudops-assistant@champion" in after.report[-1]
