"""Bad training configs and impossible requests end in one clear line, before any loading."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tuneops.core.errors import MissingToolError, UserError
from workloads.train.config import load_train_config


def test_shipped_config_and_overlays_validate():
    base = load_train_config()
    assert base.method == "lora" and base.data.packing and base.data.loss_on == "assistant"
    assert load_train_config(env="dev").method == "qlora"
    prod = load_train_config(env="prod")
    assert prod.distributed.strategy == "fsdp" and prod.precision == "auto"
    # The CPU default adapts the top layers; the GPU overlays every layer.
    assert base.lora.top_layers == 8 and prod.lora.top_layers is None
    assert prod.eval.recall_questions is None  # FSDP shards the model the probe would ask


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("method=adapter", "method: Input should be 'lora', 'dora' or 'qlora'"),
        ("lora.r=0", "lora.r: Input should be greater than 0"),
        ("lora.dropout=1.5", "lora.dropout: Input should be less than 1"),
        ("lora.target_modules=[]", "lora.target_modules"),
        ("optim.max_steps=0", "optim.max_steps"),
        ("optim.batch_size=0", "optim.batch_size"),
        ("data.loss_on=prompt", "data.loss_on"),
        ("checkpoint.uri=gs://bucket/x", "checkpoint.uri: Value error, must be s3://"),
        ("precision=fp8", "precision"),
        ("lora.rank=8", "lora.rank: Extra inputs are not permitted"),
        ("run_name=../escape", "run_name"),
        ("lora.top_layers=0", "lora.top_layers: Input should be greater than 0"),
        ("eval.keep_best=recall", "keep_best recall needs recall_questions"),
        ("eval.keep_best=best", "eval.keep_best: Input should be 'none', 'loss' or 'recall'"),
    ],
)
def test_bad_values_name_the_field(override, fragment):
    with pytest.raises(UserError, match="invalid config") as info:
        load_train_config(overrides=[override])
    assert fragment in str(info.value)


def test_qlora_with_fp32_is_rejected():
    with pytest.raises(UserError, match="qlora computes in bf16 or fp16"):
        load_train_config(overrides=["method=qlora", "precision=fp32"])


def test_qlora_on_cpu_stops_before_loading_anything(monkeypatch):
    import torch

    import workloads.models
    from workloads.train import run_training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was resolved before the qlora check")

    monkeypatch.setattr(workloads.models, "resolve_model", must_not_load)
    # A dataset that does not exist: the qlora check must come first.
    cfg = load_train_config(overrides=["method=qlora", "dataset=/no/such/snapshot"])
    with pytest.raises(MissingToolError, match="method qlora needs a CUDA GPU"):
        run_training(cfg)


def test_cli_prints_one_error_line_and_exit_code():
    bad = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "train", "--set", "lora.r=-1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "lora.r" in lines[0]
    assert "Traceback" not in bad.stderr

    qlora = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "train", "--set", "method=qlora"],
        capture_output=True,
        text=True,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"},
    )
    assert qlora.returncode == 3, qlora.stderr
    assert qlora.stderr.strip().splitlines()[-1].startswith("error: method qlora needs")
    assert "Traceback" not in qlora.stderr


def _invoke(*args: str):
    from typer.testing import CliRunner

    from workloads.train.cli import app

    return CliRunner().invoke(app, list(args))


def test_dry_run_without_on_cluster_is_refused():
    result = _invoke("--dry-run")
    assert isinstance(result.exception, UserError)
    assert "--on-cluster" in str(result.exception)


def test_the_old_on_cluster_spelling_names_the_new_one():
    result = _invoke("--on-cluster", "dev")
    assert isinstance(result.exception, UserError)
    assert "`tuneops train --on-cluster --env dev`" in str(result.exception)


def test_on_cluster_needs_an_environment_and_a_known_one():
    result = _invoke("--on-cluster", "--dry-run")
    assert isinstance(result.exception, UserError) and "--env ENV" in str(result.exception)
    result = _invoke("--env", "stagign", "--on-cluster", "--dry-run")
    assert isinstance(result.exception, UserError)
    assert "unknown environment 'stagign'" in str(result.exception)


def test_config_from_env_stands_alone(monkeypatch):
    monkeypatch.delenv("TUNEOPS_TEST_CONFIG", raising=False)
    result = _invoke("--config-from-env", "TUNEOPS_TEST_CONFIG")
    assert isinstance(result.exception, UserError) and "is not set" in str(result.exception)
    result = _invoke("--config-from-env", "TUNEOPS_TEST_CONFIG", "--env", "dev")
    assert isinstance(result.exception, UserError) and "drop --config and --env" in str(
        result.exception
    )


def test_config_from_env_trains_with_the_serialised_config(monkeypatch):
    """What a cluster job's process runs: the config comes from the variable, not a file."""
    import torch

    from workloads.train.config import to_yaml

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    carried = load_train_config(overrides=["method=qlora", "dataset=/no/such/snapshot"])
    monkeypatch.setenv("TUNEOPS_TEST_CONFIG", to_yaml(carried))
    result = _invoke("--config-from-env", "TUNEOPS_TEST_CONFIG", "--set", "lora.r=8")
    assert isinstance(result.exception, MissingToolError)  # qlora, read from the variable
    assert "method qlora needs" in str(result.exception)


def test_precision_comes_from_the_model_package_and_says_why():
    import torch

    from workloads.models.precision import cpu_bf16
    from workloads.train.preflight import train_precision

    if torch.cuda.is_available():
        pytest.skip("checks the CPU's choice")
    chosen = train_precision(load_train_config())
    use_bf16, why = cpu_bf16()
    assert chosen.short == ("bf16" if use_bf16 else "fp32") and chosen.reason == why
