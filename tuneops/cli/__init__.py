"""The `tuneops` command line: one entry point over every area of the project.

The top layer: it imports every area and nothing imports it. Each area owns a typer app in its
own ``cli`` module; groups are mounted under a name (``tuneops data build``), single commands
are merged at the top (``tuneops train``). Heavy libraries are imported inside the commands, so
``tuneops --help`` stays fast. ``tuneops demo`` runs ``tuneops.cli.demo``.
"""

from __future__ import annotations

import logging
import sys

import typer

import tuneops
from infra.cli import app as infra_app
from tuneops.core.errors import UserError
from workloads.data.cli import app as data_app
from workloads.deploy.cli import app as deploy_app
from workloads.evaluate.cli import app as evaluate_app
from workloads.monitor.cli import app as monitor_app
from workloads.registry.cli import app as registry_app
from workloads.serve.cli import app as serve_app
from workloads.train.cli import app as train_app

app = typer.Typer(
    name="tuneops",
    help="Fine-tune, evaluate, serve and ship language models on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

app.add_typer(data_app, name="data", help="Build versioned dataset snapshots.")
app.add_typer(monitor_app, name="monitor", help="Watch production traffic for drift.")
for merged in (train_app, evaluate_app, registry_app, serve_app, deploy_app, infra_app):
    app.add_typer(merged)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tuneops {tuneops.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Fine-tune, evaluate, serve and ship language models on Kubernetes."""


@app.command()
def demo() -> None:
    """Run the whole loop on the embedded default model, on this machine."""
    from tuneops.cli.demo.runner import run_demo

    run_demo()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
