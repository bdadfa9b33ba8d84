"""`tuneops monitor ...`: watch production traffic for drift."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def drift(
    prompts: str = typer.Option(
        None,
        "--prompts",
        help="sampled prompt log: a JSONL file, a folder of them, or s3://bucket/prefix "
        "(default: the server's default log under the cache).",
    ),
    dataset: str = typer.Option(
        "cloudops", "--dataset", "-d", help="training snapshot: <name>, <name>/<id> or a folder."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="monitor config YAML."),
    output: Path = typer.Option(None, "--output", "-o", help="write the report as JSON here."),
    env: str = typer.Option(
        None, "--env", "-e", help="environment (local, dev, ...): applies <config>.<env>.yaml."
    ),
    overrides: list[str] = typer.Option(None, "--set", help="override a config value: k=v"),
) -> None:
    """Compare recent prompts with the training set (PSI); exit 1 when they drifted."""
    from rich.console import Console
    from rich.table import Table

    from tuneops.core.io import atomic_write_json
    from tuneops.core.paths import cache_dir
    from workloads.monitor.config import load_monitor_config
    from workloads.monitor.drift import compare
    from workloads.monitor.prompts import load_prompts, load_reference

    cfg = load_monitor_config(config, env=env, overrides=overrides).drift
    source = prompts or str(cache_dir() / "serve" / "prompts.jsonl")
    recent = load_prompts(source, cfg.window)
    reference = load_reference(dataset, cfg.reference_split)
    report = compare(recent, reference, cfg)

    table = Table(title=f"prompt drift: {report.prompts} recent vs {report.reference} trained")
    for column in ("signal", "PSI", "threshold", "drifted", "detail"):
        table.add_column(column)
    for s in report.signals:
        detail = ", ".join(f"{k}={v}" for k, v in s.detail.items())
        verdict = "[red]yes[/red]" if s.drifted else "[green]no[/green]"
        table.add_row(s.name, f"{s.psi:.3f}", f"{report.threshold:g}", verdict, detail)
    console = Console()
    console.print(table)
    if output:
        atomic_write_json(output, report.to_dict())
    worst = max(report.signals, key=lambda s: s.psi)
    summary = (
        f"drift {'DETECTED' if report.drifted else 'none'}: worst PSI {worst.psi:.3f} "
        f"({worst.name}) vs threshold {report.threshold:g}; "
        f"out-of-vocabulary words {report.oov_rate:.1%}"
    )
    console.print(summary)
    if report.drifted:
        raise typer.Exit(1)


@app.command()
def sink(
    host: str = typer.Option(None, "--host", help="interface to bind (default: sink.host)."),
    port: int = typer.Option(None, "--port", "-p", help="HTTP port (default: sink.port)."),
    log: str = typer.Option(
        None, "--log", help="where sampled prompts go: a JSONL file or s3://bucket/prefix."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="monitor config YAML."),
    env: str = typer.Option(
        None, "--env", "-e", help="environment (local, dev, ...): applies <config>.<env>.yaml."
    ),
    overrides: list[str] = typer.Option(None, "--set", help="override a config value: k=v"),
) -> None:
    """Receive KServe inference-logger events and sample their prompts for drift."""
    from tuneops.core.config import option_overrides
    from workloads.monitor.config import load_monitor_config
    from workloads.monitor.sink import run_sink

    extra = option_overrides(overrides, {"sink.host": host, "sink.port": port, "sink.log": log})
    run_sink(load_monitor_config(config, env=env, overrides=extra).sink)
