"""Commands of this area; wired into the `tuneops` CLI by tuneops/cli.py."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


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
    split: list[str] = typer.Option(
        None, "--split", help="benchmark and/or test; repeatable (default: the config's)."
    ),
    judge: bool = typer.Option(None, "--judge/--no-judge", help="Grade answers with the judge."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Report directory."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not log to MLflow."),
    env: str = typer.Option(
        None, "--env", help="Environment (local, dev, staging, prod): applies <config>.<env>.yaml."
    ),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key.sub=value."),
) -> None:
    """Evaluate a model against the base model and the champion on the benchmark."""
    from rich.console import Console
    from rich.table import Table

    from tuneops.core.config import option_overrides
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.plan import parse_baselines
    from workloads.evaluate.report import comparison_rows, summary_line
    from workloads.evaluate.runner import run_eval

    extra = option_overrides(overrides, {"splits": split or None, "judge.enabled": judge})
    cfg = load_eval_config(config, env=env, overrides=extra)
    result = run_eval(
        cfg,
        model,
        parse_baselines(baseline, cfg.baselines),
        run_id=run_id,
        output_dir=output_dir,
        log_to_mlflow=not no_log,
    )
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
