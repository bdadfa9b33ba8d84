"""`tuneops train`: fine-tune locally, under torchrun, or hand the run to the cluster."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tuneops.core.errors import UserError

app = typer.Typer(no_args_is_help=True)


@app.command()
def train(
    legacy_env: str = typer.Argument(None, hidden=True),
    config: Path = typer.Option(
        None, "--config", "-c", help="Training config YAML (default: configs/train/default.yaml)."
    ),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="Snapshot: <name>, <name>/<id> or a snapshot directory."
    ),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one config value: key.sub=value (repeatable)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume/--no-resume",
        help="Continue from the newest valid checkpoint of the run, or start afresh.",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Run directory (default: .cache/runs/<run_name>)."
    ),
    env: str = typer.Option(
        None,
        "--env",
        "-e",
        help="Environment: the overlay <config>.<env>.yaml; with --on-cluster, its cluster.",
    ),
    on_cluster: bool = typer.Option(
        False, "--on-cluster", help="Submit the run as a training job to the --env cluster."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --on-cluster: render and validate the job, submit nothing."
    ),
    config_from_env: str = typer.Option(
        None,
        "--config-from-env",
        metavar="VAR",
        help="Read the resolved config (YAML) from environment variable VAR (the cluster job).",
    ),
) -> None:
    """Fine-tune a base model on a dataset snapshot (LoRA, DoRA or QLoRA)."""
    from tuneops.core.config import option_overrides
    from tuneops.core.environments import refuse_positional_env

    refuse_positional_env(legacy_env, "train --on-cluster" if on_cluster else "train")
    sets = option_overrides(overrides, {"dataset": dataset or None})
    if on_cluster:
        _submit(config, env, sets, resume=resume, output=output, dry_run=dry_run)
        return
    if dry_run:
        raise UserError("--dry-run goes with --on-cluster --env ENV")

    from workloads.train.trainer import run_training, summary_line

    cfg, source = _load(config, env, sets, config_from_env)
    result = run_training(cfg, resume=resume, output=output, config_source=source)
    if result.is_main:
        typer.echo(summary_line(result))


def _load(config: Path | None, env: str | None, sets: list[str], variable: str | None):
    """The validated config and where it came from (a file, or the job's variable)."""
    from workloads.train.config import DEFAULT_CONFIG, load_train_config, train_config_from_text

    if variable is None:
        path = config or DEFAULT_CONFIG
        return load_train_config(path, env=env, overrides=sets), str(path)
    if config is not None or env is not None:
        raise UserError("--config-from-env holds the resolved config; drop --config and --env")
    text = os.environ.get(variable)
    if not text:
        raise UserError(f"--config-from-env {variable}: that environment variable is not set")
    return train_config_from_text(text, source=f"${variable}", overrides=sets), f"${variable}"


def _submit(
    config: Path | None,
    env: str | None,
    sets: list[str],
    *,
    resume: bool,
    output: Path | None,
    dry_run: bool,
) -> None:
    """Validate the config with the environment's overlay, then hand it to the cluster."""
    from workloads.deploy.trainjob import run_on_cluster
    from workloads.train.config import DEFAULT_CONFIG, load_train_config

    if not env:
        raise UserError("--on-cluster needs --env ENV: the environment whose cluster runs the job")
    if resume or output:
        raise UserError("--resume and --output apply to local runs, not --on-cluster")
    cfg = load_train_config(config or DEFAULT_CONFIG, env=env, overrides=sets)
    run_on_cluster(cfg, env, dry_run=dry_run)
