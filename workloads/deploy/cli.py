"""Commands of this area; wired into the `tuneops` CLI by `tuneops/cli/`.

``tuneops gitops render``, ``tuneops release promote|rollback|analyze`` and
``tuneops images lint|build``;
each takes the environment as ``--env NAME``.
(``tuneops train --on-cluster`` lives with the train commands and calls
``workloads.deploy.trainjob.run_on_cluster``.)
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)
gitops_app = typer.Typer(no_args_is_help=True)
release_app = typer.Typer(no_args_is_help=True)
images_app = typer.Typer(no_args_is_help=True)
app.add_typer(gitops_app, name="gitops", help="Render the manifests Argo CD syncs (gitops/envs).")
app.add_typer(
    release_app, name="release", help="Move serving traffic: canary, full promotion, rollback."
)
app.add_typer(images_app, name="images", help="Lint, build and push the container images.")

SET_HELP = "Override one value of configs/deploy/<env>.yaml, e.g. serving.max_replicas=4."
ROOT_HELP = "Folder holding one folder per environment (default: gitops/envs)."
ENV_HELP = "Environment: a file configs/deploy/<env>.yaml."


def _old_env_argument(command: str):
    """The environment as a positional argument, the old spelling: hidden, and refused with the
    new one named. It is checked while the line is parsed, before the missing --env is."""

    def refuse(value: str | None) -> str | None:
        from tuneops.core.environments import refuse_positional_env

        refuse_positional_env(value, command)
        return value

    return typer.Argument(None, hidden=True, callback=refuse)


def _show(result, action: str) -> None:
    from rich.console import Console
    from rich.syntax import Syntax

    console = Console()
    if result.diff:
        if console.is_terminal:
            console.print(Syntax(result.diff, "diff", theme="ansi_dark"))
        else:  # piped or captured: the plain diff, unwrapped, so `git apply` can read it
            typer.echo(result.diff, nl=False)
    state = result.state
    served = state.stable.label()
    if state.canary:
        served += f" ({100 - state.canary.percent}%) + {state.canary.model.label()} "
        served += f"({state.canary.percent}%, canary)"
    else:
        served += " (100%)"
    change = f"{len(result.diff.splitlines())} diff lines" if result.diff else "no change"
    console.print(
        f"{action} {result.env}: {served}; {len(result.files)} files in {result.path} "
        f"({change}; policy gate: {result.policy})",
        soft_wrap=True,
        highlight=False,
    )


@gitops_app.command("render")
def render_cmd(
    old_env: str | None = _old_env_argument("gitops render"),
    env: str = typer.Option(..., "--env", "-e", help=ENV_HELP),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="models:/name@alias, models:/name/<version> or s3://...; sets the stable version. "
        "Default: keep the current release, or the config's registry.model for a first render.",
    ),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Render the InferenceService(s), route, release state and Argo CD apps of ENV."""
    from workloads.deploy import gitops
    from workloads.deploy.config import load_deploy_config

    cfg = load_deploy_config(env, overrides=overrides)
    _show(gitops.render(cfg, model=model, root=root), "rendered")


@release_app.command("promote")
def promote_cmd(
    old_env: str | None = _old_env_argument("release promote"),
    env: str = typer.Option(..., "--env", "-e", help=ENV_HELP),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="The version to promote (models:/name@alias, models:/name/<version>, s3://...). "
        "Default for --canary: the config's registry.model; for --full: the running canary.",
    ),
    canary: int | None = typer.Option(
        None, "--canary", help="Send this percentage (1-99) of the traffic to the new version."
    ),
    full: bool = typer.Option(False, "--full", help="Send all traffic to the new version."),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Promote a model in ENV by canary or fully; prints the diff it wrote."""
    from workloads.deploy import gitops
    from workloads.deploy.config import load_deploy_config

    cfg = load_deploy_config(env, overrides=overrides)
    result = gitops.promote(cfg, model=model, canary=canary, full=full, root=root)
    _show(result, "promoted")


@release_app.command("rollback")
def rollback_cmd(
    old_env: str | None = _old_env_argument("release rollback"),
    env: str = typer.Option(..., "--env", "-e", help=ENV_HELP),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Drop the running canary, or restore the previous version; prints the diff it wrote."""
    from workloads.deploy import gitops
    from workloads.deploy.config import load_deploy_config

    cfg = load_deploy_config(env, overrides=overrides)
    _show(gitops.rollback(cfg, root=root), "rolled back")


@release_app.command("analyze")
def analyze_cmd(
    old_env: str | None = _old_env_argument("release analyze"),
    env: str = typer.Option(..., "--env", "-e", help=ENV_HELP),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the table and the verdict; write nothing."
    ),
    root: Path | None = typer.Option(None, "--root", help=ROOT_HELP),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Judge the running canary of ENV on live signals from Prometheus, then step its weight
    up, promote it or roll it back. Exit 0 promoted, 10 stepped, 11 waiting, 12 rolled back."""
    import logging

    from workloads.deploy import analyze
    from workloads.deploy.config import load_deploy_config

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per Prometheus query
    cfg = load_deploy_config(env, overrides=overrides)
    result = analyze.analyze(cfg, root=root, dry_run=dry_run)
    _show_analysis(result)
    raise typer.Exit(result.exit_code)


def _show_analysis(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from workloads.deploy.analyze import format_value, summary

    table = Table(title=f"{result.env}: canary at {result.percent}% over {result.window}")
    for column in ("signal", "stable", "canary", "ceiling", "max ratio", "result"):
        table.add_column(column, justify="left" if column in ("signal", "result") else "right")
    for row in result.rows:
        ratio = f"{row.max_ratio:g}x" if row.max_ratio else "-"
        table.add_row(
            row.name,
            format_value(row.stable, row.unit),
            format_value(row.canary, row.unit),
            format_value(row.ceiling, row.unit),
            ratio,
            row.outcome,
        )
    console = Console(width=120)
    console.print(table)
    if result.written is not None:
        done = {"step": "stepped", "promote": "promoted", "rollback": "rolled back"}
        _show(result.written, done[result.verdict.value])
    console.print(summary(result), soft_wrap=True, highlight=False)


@images_app.command("lint")
def images_lint_cmd(
    files: list[Path] = typer.Argument(None, help="Dockerfiles (default: workloads/images/*)."),
) -> None:
    """Run hadolint on the Dockerfiles; fails on any warning."""
    from tuneops.core.errors import UserError
    from workloads.deploy import images

    results = images.lint(files or None)
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        typer.echo(f"{mark} {result.file.name}")
        if result.output:
            typer.echo("     " + result.output.replace("\n", "\n     "))
    bad = [r.file.name for r in results if not r.ok]
    if bad:
        raise UserError(f"hadolint found problems in {', '.join(bad)}")
    typer.echo(f"hadolint: {len(results)} Dockerfiles clean")


@images_app.command("build")
def images_build_cmd(
    names: list[str] = typer.Argument(None, help="Images to build (default: all in the config)."),
    env: str = typer.Option("dev", "--env", "-e", help="Environment whose registry receives them."),
    push: bool = typer.Option(True, "--push/--no-push", help="Push after building."),
    overrides: list[str] = typer.Option([], "--set", help=SET_HELP),
) -> None:
    """Build (and push) the images; needs a running Docker engine."""
    from workloads.deploy import images
    from workloads.deploy.config import load_deploy_config

    cfg = load_deploy_config(env, overrides=overrides)
    built = images.build(cfg, names or None, push=push)
    for image in built:
        typer.echo(
            f"{image.name}: {image.reference}" + (f"@{image.digest}" if image.digest else "")
        )
    pinned = " (set images.images.<name>.digest to pin them)" if push else ""
    typer.echo(f"built {len(built)} images for {env}{pinned}")
