"""The `tuneops` command line: one entry point over every area of the project.

The top layer: it imports every area and nothing imports it. Each area owns a typer app in its
own ``cli`` module; groups are mounted under a name (``tuneops data build``), single commands
are merged at the top (``tuneops train``). Heavy libraries are imported inside the commands, so
``tuneops --help`` stays fast. ``tuneops demo`` runs ``tuneops.cli.demo``.

Options follow one spelling across commands (docs/architecture.md): ``--env/-e``, ``--set``,
``--config/-c``, ``--output/-o`` for what a command writes, ``--root`` for a tree it reads and
adds to, boolean options as flags (``--resume/--no-resume``), fixed choices typed so ``--help``
lists them. Spellings that were renamed stay accepted, hidden, through ``OLD_SPELLINGS``.
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

# Renamed options, old spelling -> new: the parser maps every option name it reads through
# `token_normalize_func`, in every subcommand, so old scripts keep working while --help shows
# the new spelling alone.
OLD_SPELLINGS = {
    "out": "root",
    "outdir": "output",
    "output-dir": "output",
    "no-log": "no-log-mlflow",
}


def new_spelling(name: str) -> str:
    return OLD_SPELLINGS.get(name, name)


app = typer.Typer(
    name="tuneops",
    help="Fine-tune, evaluate, serve and ship language models on Kubernetes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: typer's rich help prints `<bool>` after every flag, as if it took a value.
    rich_markup_mode=None,
    context_settings={"token_normalize_func": new_spelling},
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
def demo(
    sets: list[str] = typer.Option(
        [],
        "--set",
        help="Override one step's config: train.KEY=VALUE, eval.KEY=VALUE or "
        "registry.KEY=VALUE (repeatable), e.g. --set train.seed=7.",
    ),
) -> None:
    """Run the whole loop on the embedded default model, on this machine."""
    from tuneops.cli.demo.runner import run_demo
    from tuneops.cli.demo.state import DemoState, StepOverrides

    run_demo(DemoState(overrides=StepOverrides.parse(sets)))


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
