"""`tuneops train`: fine-tune locally, under torchrun, or hand the run to the cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from tuneops.core.errors import UserError

app = typer.Typer(no_args_is_help=True)


@app.command()
def train(
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
        False, "--resume", help="Continue from the newest valid checkpoint of the run."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Run directory (default: .cache/runs/<run_name>)."
    ),
    env: str = typer.Option(
        None, "--env", help="Apply the config overlay <config>.<env>.yaml (local runs)."
    ),
    on_cluster: str = typer.Option(
        None, "--on-cluster", metavar="ENV", help="Submit as a training job in cluster ENV."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="With --on-cluster: render and validate the job, submit nothing."
    ),
) -> None:
    """Fine-tune a base model on a dataset snapshot (LoRA, DoRA or QLoRA)."""
    from tuneops.core.config import option_overrides
    from workloads.train.config import DEFAULT_CONFIG, load_train_config

    config_path = config or DEFAULT_CONFIG
    sets = option_overrides(overrides, {"dataset": dataset or None})
    if on_cluster:
        if resume or output:
            raise UserError("--resume and --output apply to local runs, not --on-cluster")
        # Validate here so a bad config fails before anything is rendered or submitted.
        load_train_config(config_path, env=on_cluster, overrides=sets)
        try:
            from workloads.deploy.trainjob import run_on_cluster
        except ImportError as exc:
            raise UserError(
                "--on-cluster needs workloads.deploy.trainjob, which this checkout lacks"
            ) from exc
        run_on_cluster(on_cluster, Path(config_path), sets, dry_run)
        return
    if dry_run:
        raise UserError("--dry-run goes with --on-cluster ENV")

    from workloads.train.trainer import run_training, summary_line

    cfg = load_train_config(config_path, env=env, overrides=sets)
    result = run_training(cfg, resume=resume, output=output, config_source=str(config_path))
    if result.is_main:
        typer.echo(summary_line(result))
