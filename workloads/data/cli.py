"""Commands of this area; wired into the `tuneops` CLI by `tuneops/cli/` (`tuneops data ...`)."""

from __future__ import annotations

from pathlib import Path

import typer

from workloads.data.config import OnError

app = typer.Typer(no_args_is_help=True)


@app.command()
def build(
    config: Path = typer.Option(
        None, "--config", "-c", help="dataset config (default configs/data/default.yaml)"
    ),
    env: str = typer.Option(None, "--env", "-e", help="apply the <config>.<env>.yaml overlay"),
    overrides: list[str] = typer.Option(
        None, "--set", help="override a config value for this run, e.g. dedup.threshold=0.8"
    ),
    on_error: OnError | None = typer.Option(
        None,
        "--on-error",
        help="bad input: fail (stop with the file and line) or quarantine (to rejects); "
        "default: the config's on_error",
    ),
    root: Path = typer.Option(
        None, "--root", help="datasets root to write into (default <cache>/datasets)"
    ),
    upload: str = typer.Option(
        None, "--upload", help="also copy the snapshot to s3://bucket/prefix"
    ),
    log_mlflow: bool = typer.Option(
        False, "--log-mlflow/--no-log-mlflow", help="log the snapshot to MLflow as dataset inputs"
    ),
    tracking_uri: str = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or local)"
    ),
) -> None:
    """Build a versioned dataset snapshot from the sources in the config."""
    from rich.console import Console

    from workloads.data.config import load_data_config
    from workloads.data.pipeline import build_dataset

    console = Console(stderr=True)
    cfg = load_data_config(config, env=env, overrides=overrides)
    console.print(f"[bold]building dataset {cfg.name!r}[/] from {len(cfg.sources)} source(s)")
    result = build_dataset(
        cfg,
        out=root,
        on_error=on_error,
        progress=True,
        echo=lambda line: console.print("  " + line),
    )
    if upload:
        from workloads.data.publish import upload_snapshot

        uri = upload_snapshot(result.snapshot, upload, cfg.upload_retry)
        console.print(f"  uploaded to {uri}")
    if log_mlflow:
        from workloads.data.publish import log_snapshot_to_mlflow

        run_id = log_snapshot_to_mlflow(
            result.snapshot, tracking_uri=tracking_uri, source_uri=uri if upload else None
        )
        console.print(f"  logged to MLflow run {run_id}")
    typer.echo(result.summary())


@app.command()
def show(
    ref: str = typer.Argument("cloudops", help="snapshot folder, <name> (latest) or <name>/<id>"),
    root: Path = typer.Option(None, "--root", help="datasets root (default <cache>/datasets)"),
) -> None:
    """Print a snapshot's manifest summary: counts per stage, reject reasons, splits."""
    from workloads.data.pipeline import STAGES
    from workloads.data.snapshot import load_snapshot
    from workloads.data.split import SPLITS

    snap = load_snapshot(ref, root=root)
    m = snap.manifest
    acc = m.get("accounting", {})
    typer.echo(f"snapshot  {snap.name}/{snap.id}  ({snap.path})")
    typer.echo(f"created   {m.get('created_at')}  commit {m.get('git_commit') or 'unknown'}")
    typer.echo(
        f"records   {acc.get('written')} written, {acc.get('rejected')} rejected, "
        f"{acc.get('in')} in (balanced: {acc.get('balanced')})"
    )
    splits = m.get("splits", {})
    typer.echo("splits    " + ", ".join(f"{k} {splits[k]}" for k in SPLITS if k in splits))
    typer.echo("stages")
    stages = m.get("stages", {})
    for name in [s for s in STAGES if s in stages]:
        stage = stages[name]
        reasons = ", ".join(f"{k} {v}" for k, v in stage.get("reasons", {}).items())
        line = (
            f"  {name:<14} {stage['in']:>6} in {stage['out']:>6} out "
            f"{stage['rejected']:>5} rejected"
        )
        typer.echo(line + (f"  ({reasons})" if reasons else ""))
    replacements = (m.get("scrub") or {}).get("replacements") or {}
    if replacements:
        typer.echo("scrubbed  " + ", ".join(f"{k} {v}" for k, v in replacements.items()))
    tokens = m.get("tokens") or {}
    if tokens:
        typer.echo(
            f"tokens    mean {tokens.get('tokens_mean')}, max {tokens.get('tokens_max')} "
            f"of {tokens.get('max_length')} ({tokens.get('tokenizer')})"
        )
