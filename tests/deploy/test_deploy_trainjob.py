"""The Kubeflow TrainJob that runs `tuneops train` on the cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tuneops.core.errors import MissingToolError, UserError
from workloads.deploy.config import load_deploy_config
from workloads.deploy.trainjob import TRAIN_CONFIG_VAR, build_trainjob, run_on_cluster
from workloads.train.config import load_train_config, train_config_from_text


def _pod_spec(job: dict) -> dict:
    (patch,) = job["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"
    return replicated["template"]["spec"]["template"]["spec"]


def _env(job: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in job["spec"]["trainer"]["env"]}


def _job_config(job: dict):
    return train_config_from_text(_env(job)[TRAIN_CONFIG_VAR], source="the job")


def test_trainjob_shape_for_prod():
    cfg = load_deploy_config("prod")
    train = load_train_config(env="prod", overrides=["optim.epochs=1", "lora.r=8"])
    job = build_trainjob(cfg, train)
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    trainer = job["spec"]["trainer"]
    # N nodes x M GPUs from configs/deploy/prod.yaml.
    assert trainer["numNodes"] == cfg.training.num_nodes == 2
    assert trainer["numProcPerNode"] == cfg.training.gpus_per_node == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    # The same entrypoint as on a laptop, under torchrun, data and outputs on S3.
    command = trainer["command"]
    stage, train_cmd = command[: command.index("--")], command[command.index("--") + 1 :]
    # Each pod stages the snapshot from S3, then execs torchrun over `tuneops train`.
    assert stage[:3] == ["python", "-m", "workloads.deploy.stage"]
    assert stage[stage.index("--from") + 1] == cfg.training.data_uri
    assert stage[stage.index("--dataset") + 1] == "cloudops"  # from the train config
    assert train_cmd == [
        "torchrun",
        "--no-python",
        "tuneops",
        "train",
        "--config-from-env",
        TRAIN_CONFIG_VAR,
    ]
    # The job carries the validated config itself, with the job's name, output and checkpoints.
    name = job["metadata"]["name"]
    carried = _job_config(job)
    assert carried.optim.epochs == 1 and carried.lora.r == 8
    assert carried.distributed.strategy == "fsdp"  # the prod overlay, applied once, here
    assert carried.run_name == name and str(carried.output_dir) == "/workspace/output"
    assert carried.checkpoint.uri == f"{cfg.training.output_uri}/{name}/checkpoints"
    assert carried.model_dump(exclude={"run_name", "output_dir", "checkpoint"}) == (
        train.model_dump(exclude={"run_name", "output_dir", "checkpoint"})
    )
    assert trainer["image"].endswith("/tuneops/train:0.1.0")
    pod = _pod_spec(job)
    assert pod["serviceAccountName"] == "trainer"
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == "p4d.24xlarge"
    env = _env(job)
    assert env["TUNEOPS_OUTPUT_URI"].startswith("s3://") and "MLFLOW_TRACKING_URI" in env
    assert env["TUNEOPS_ENV"] == "prod"


def test_the_dataset_goes_to_the_stage_step():
    cfg = load_deploy_config("dev")
    train = load_train_config(env="dev", overrides=["dataset=cloudops/abc123"])
    job = build_trainjob(cfg, train)
    command = job["spec"]["trainer"]["command"]
    assert command[command.index("--dataset") + 1] == "cloudops/abc123"
    assert "--set" not in command  # the stage step adds dataset=<name>/<id> after staging


def test_trainjob_is_deterministic_and_follows_config():
    cfg = load_deploy_config("dev", overrides=["training.num_nodes=3", "training.gpus_per_node=2"])
    train = load_train_config(env="dev")
    one = build_trainjob(cfg, train)
    assert one == build_trainjob(cfg, train)
    assert one["spec"]["trainer"]["numNodes"] == 3
    assert one["spec"]["trainer"]["numProcPerNode"] == 2
    # dev's training pool falls back to the environment's GPU node selector.
    assert _pod_spec(one)["nodeSelector"] == {"tuneops.io/accelerator": "nvidia"}
    # Another config is another job.
    other = build_trainjob(cfg, load_train_config(env="dev", overrides=["lora.r=8"]))
    assert other["metadata"]["name"] != one["metadata"]["name"]


def test_trainjob_rejects_bad_input():
    with pytest.raises(UserError, match="s3://"):
        load_deploy_config("dev", overrides=["training.data_uri=/data/local"])


def test_dry_run_prints_the_manifest(capsys):
    train = load_train_config(env="staging", overrides=["optim.max_steps=10"])
    run_on_cluster(train, "staging", dry_run=True)
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["kind"] == "TrainJob" and job["metadata"]["labels"]["tuneops.io/env"] == "staging"
    assert _job_config(job).optim.max_steps == 10


def test_without_kubeconfig_it_fails_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(MissingToolError, match="no usable kubeconfig"):
        run_on_cluster(load_train_config(env="dev"), "dev", dry_run=False)


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys; from tuneops.cli import main; sys.argv = {['tuneops', *args]!r}; main()"
    env = {"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith(("INFO", "WARNING"))]


def test_on_cluster_cli_without_kubeconfig(tmp_path):
    """Through the CLI: one `error:` line, exit code 3, no traceback."""
    proc = _cli(tmp_path, "train", "--on-cluster", "--env", "dev")
    lines = _error_lines(proc)
    assert proc.returncode == 3, proc.stderr
    assert lines == [lines[0]] and lines[0].startswith("error: no usable kubeconfig")


def test_the_old_on_cluster_spelling_is_one_line_naming_the_new(tmp_path):
    proc = _cli(tmp_path, "train", "--on-cluster", "dev")
    lines = _error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert lines == [lines[0]] and "`tuneops train --on-cluster --env dev`" in lines[0]
