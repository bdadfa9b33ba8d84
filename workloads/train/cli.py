"""Commands of this area; wired into the `tuneops` CLI by tuneops/cli.py."""

import typer

app = typer.Typer(no_args_is_help=True)
