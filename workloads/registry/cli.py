"""Commands of this area; wired into the `tuneops` CLI by tuneops/cli.py."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)

CONFIG_HELP = "Registry config YAML (default configs/registry/default.yaml)."
ENV_HELP = "Environment (local, dev, staging, prod): applies the overlay <config>.<env>.yaml."
BREAK_HELP = (
    "Take over the promotion lock held by OWNER (the id a lock-held error names) when that "
    "process is gone; refused if another owner holds it."
)


def _config(config: Path | None, env: str | None, overrides: list[str] | None):
    from workloads.registry.config import load_registry_config

    return load_registry_config(config, env=env, overrides=overrides)


@app.command("register")
def register_command(
    run_id: str = typer.Option(..., "--run-id", help="MLflow run whose model to register."),
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    env: str = typer.Option(None, "--env", "-e", help=ENV_HELP),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key.sub=value."),
) -> None:
    """Register a training run's model as a new version with alias `candidate`."""
    from workloads.registry.registry import register

    cfg = _config(config, env, overrides)
    reg = register(cfg, run_id)
    scores = ", ".join(
        f"{k.split('.')[-1]}={v}"
        for k, v in reg.tags.items()
        if k.startswith("eval.")
        and k.count(".") == 2
        and k.split(".")[-1] in ("key_fact_recall", "rouge_l", "chrf")
    )
    typer.echo(
        f"registered {reg.name} v{reg.version} from run {reg.run_id} "
        f"as {cfg.aliases.candidate!r}"
        + (f" ({scores})" if scores else " (not evaluated yet: promote will refuse)")
    )


@app.command("promote")
def promote_command(
    version: str = typer.Option(
        None, "--version", "-v", help="Version to promote (default: the `candidate` alias)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the gate, move nothing."),
    break_lock: str = typer.Option(None, "--break-lock", metavar="OWNER", help=BREAK_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    env: str = typer.Option(None, "--env", "-e", help=ENV_HELP),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key.sub=value."),
) -> None:
    """Make a version the champion if the promotion gate holds (exit 4 when refused)."""
    from workloads.registry.gate import GateRefusedError
    from workloads.registry.registry import promote

    cfg = _config(config, env, overrides)
    try:
        decision = promote(cfg, version, dry_run=dry_run, break_lock=break_lock)
    except GateRefusedError as exc:
        for check in exc.decision.checks if exc.decision else []:
            typer.echo(f"  {'pass' if check.passed else 'FAIL'}  {check.message}", err=True)
        raise
    if decision.already_champion:
        typer.echo(f"{cfg.name} v{decision.version} is already the champion; nothing to do")
        return
    for check in decision.checks:
        typer.echo(f"  pass  {check.message}")
    if dry_run:
        typer.echo(f"gate holds for {cfg.name} v{decision.version} (dry run: nothing moved)")
        return
    was = f"; v{decision.champion} is now {cfg.aliases.previous!r}" if decision.champion else ""
    typer.echo(f"promoted {cfg.name} v{decision.version} to {cfg.aliases.champion!r}{was}")


@app.command("rollback")
def rollback_command(
    break_lock: str = typer.Option(None, "--break-lock", metavar="OWNER", help=BREAK_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    env: str = typer.Option(None, "--env", "-e", help=ENV_HELP),
    overrides: list[str] = typer.Option(None, "--set", help="Config override key.sub=value."),
) -> None:
    """Restore the `previous` version as champion."""
    from workloads.registry.registry import rollback

    cfg = _config(config, env, overrides)
    rb = rollback(cfg, break_lock=break_lock)
    after = f"; {cfg.aliases.previous!r} is now v{rb.previous}" if rb.previous else ""
    typer.echo(
        f"rolled back {rb.name}: {cfg.aliases.champion!r} v{rb.from_version or '—'} -> "
        f"v{rb.to_version}{after}"
    )
