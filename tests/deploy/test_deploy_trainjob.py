"""The Kubeflow TrainJob that runs `tuneops train` on the cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tuneops.core.errors import MissingToolError, UserError
from workloads.deploy.config import load_deploy_config
from workloads.deploy.trainjob import build_trainjob, run_on_cluster

CONFIG = Path("configs/train/default.yaml")


def _pod_spec(job: dict) -> dict:
    (patch,) = job["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    return replicated["template"]["spec"]["template"]["spec"]


def test_trainjob_shape_for_prod():
    cfg = load_deploy_config("prod")
    job = build_trainjob(cfg, CONFIG, ["optim.epochs=1", "lora.r=8"])
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    # N nodes x M GPUs from configs/deploy/prod.yaml.
    assert trainer["numNodes"] == cfg.training.num_nodes == 2
    assert trainer["numProcPerNode"] == cfg.training.gpus_per_node == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    # The same entrypoint as on a laptop, under torchrun, data and outputs on S3.
    command = trainer["command"]
    stage, train = command[: command.index("--")], command[command.index("--") + 1 :]
    # Each pod stages the snapshot from S3, then execs torchrun over `tuneops train`.
    assert stage[:3] == ["python", "-m", "workloads.deploy.stage"]
    assert stage[stage.index("--from") + 1] == cfg.training.data_uri
    assert stage[stage.index("--dataset") + 1] == "cloudops"  # from the train config
    assert train[:4] == ["torchrun", "--no-python", "tuneops", "train"]
    assert train[train.index("--config") + 1] == "configs/train/default.yaml"
    assert train[train.index("--env") + 1] == "prod"
    sets = [train[i + 1] for i, arg in enumerate(train) if arg == "--set"]
    assert "optim.epochs=1" in sets and "lora.r=8" in sets
    name = job["metadata"]["name"]
    assert f"checkpoint.uri={cfg.training.output_uri}/{name}/checkpoints" in sets
    assert trainer["image"].endswith("/tuneops/train:0.1.0")
    pod = _pod_spec(job)
    assert pod["serviceAccountName"] == "trainer"
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["TUNEOPS_OUTPUT_URI"].startswith("s3://") and "MLFLOW_TRACKING_URI" in env


def test_dataset_override_goes_to_the_stage_step():
    cfg = load_deploy_config("dev")
    command = build_trainjob(cfg, CONFIG, ["dataset=cloudops/abc123"])["spec"]["trainer"]["command"]
    assert command[command.index("--dataset") + 1] == "cloudops/abc123"
    assert "dataset=cloudops/abc123" not in command  # the stage step sets it after staging


def test_trainjob_is_deterministic_and_follows_config():
    cfg = load_deploy_config("dev", overrides=["training.num_nodes=3", "training.gpus_per_node=2"])
    one = build_trainjob(cfg, CONFIG, [])
    assert one == build_trainjob(cfg, CONFIG, [])
    assert one["spec"]["trainer"]["numNodes"] == 3
    assert one["spec"]["trainer"]["numProcPerNode"] == 2
    # dev's training pool falls back to the environment's GPU node selector.
    assert _pod_spec(one)["nodeSelector"] == {"tuneops.io/accelerator": "nvidia"}


def test_trainjob_rejects_bad_input():
    cfg = load_deploy_config("dev")
    with pytest.raises(UserError, match=r"key\.sub=value"):
        build_trainjob(cfg, CONFIG, ["no-equals-sign"])
    with pytest.raises(UserError, match="outside the repository"):
        build_trainjob(cfg, Path("/etc/train.yaml"), [])
    with pytest.raises(UserError, match="s3://"):
        load_deploy_config("dev", overrides=["training.data_uri=/data/local"])


def test_dry_run_prints_the_manifest(capsys):
    run_on_cluster("staging", CONFIG, ["optim.max_steps=10"], dry_run=True)
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["kind"] == "TrainJob" and job["metadata"]["labels"]["tuneops.io/env"] == "staging"


def test_without_kubeconfig_it_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(MissingToolError, match="no usable kubeconfig"):
        run_on_cluster("dev", CONFIG, [], dry_run=False)


def test_on_cluster_cli_without_kubeconfig(tmp_path):
    """Through the CLI: one `error:` line, exit code 3, no traceback."""
    code = (
        "import sys; from tuneops.cli import main; "
        "sys.argv = ['tuneops', 'train', '--on-cluster', 'dev']; main()"
    )
    env = {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if "No such option: --on-cluster" in proc.stderr:
        pytest.fail("tuneops train has no --on-cluster option yet")
    lines = [line for line in proc.stderr.splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert proc.returncode == 3, proc.stderr
    assert lines == [lines[0]] and lines[0].startswith("error: no usable kubeconfig")
