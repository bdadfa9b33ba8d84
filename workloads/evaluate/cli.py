"""Commands of this area; wired into the `tuneops` CLI by tuneops/cli.py."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import get_args

import typer

from workloads.evaluate.config import Split

app = typer.Typer(no_args_is_help=True)
# The splits as an Enum: a repeatable option's choices must be one.
SplitName = StrEnum("SplitName", {name: name for name in get_args(Split)})
ENV_HELP = "Environment (local, dev, staging, prod): applies <config>.<env>.yaml."


@app.command("eval")
def eval_command(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Candidate: runs:/<id>/model, models:/<name>@<alias>, a directory, "
        "embedded:<name>, or an OpenAI-compatible URL (http://host:port/openai/v1[#model]).",
    ),
    baseline: list[str] = typer.Option(
        None,
        "--baseline",
        "-b",
        help="A model to compare with, REF or LABEL=REF; repeatable. Default: the config's "
        "baselines (base model and current champion).",
    ),
    config: Path = typer.Option(None, "--config", "-c", help="Eval config YAML."),
    run_id: str = typer.Option(
        None, "--run-id", help="MLflow run to log into (default: the candidate's own run)."
    ),
    split: list[SplitName] = typer.Option(
        None, "--split", help="A split to evaluate; repeatable (default: the config's)."
    ),
    judge: bool = typer.Option(None, "--judge/--no-judge", help="Grade answers with the judge."),
    output: Path = typer.Option(None, "--output", "-o", help="Report directory."),
    log_mlflow: bool = typer.Option(
        True, "--log-mlflow/--no-log-mlflow", help="Log the results to MLflow."
    ),
    env: str = typer.Option(None, "--env", "-e", help=ENV_HELP),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key.sub=value."),
) -> None:
    """Evaluate a model against the base model and the champion on the benchmark."""
    from tuneops.core.config import option_overrides
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.plan import parse_baselines
    from workloads.evaluate.runner import run_eval

    splits = [name.value for name in split or []]
    extra = option_overrides(overrides, {"splits": splits or None, "judge.enabled": judge})
    cfg = load_eval_config(config, env=env, overrides=extra)
    result = run_eval(
        cfg,
        model,
        parse_baselines(baseline, cfg.baselines),
        run_id=run_id,
        output_dir=output,
        log_to_mlflow=log_mlflow,
    )
    _show(result, cfg)


def _show(result, cfg) -> None:
    """The notes, one comparison table per split, and the summary line."""
    from rich.console import Console
    from rich.table import Table

    from workloads.evaluate.report import comparison_rows, summary_line

    console = Console()
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    for s in result.splits:
        header, rows = comparison_rows(result, s, cfg.report.table_metrics)
        table = Table(*header, title=f"{s}")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    typer.echo(summary_line(result, cfg))
