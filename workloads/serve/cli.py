"""`tuneops serve`: start the model server (merged at the top level of the CLI)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def serve(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="models:/name@alias, runs:/<id>/model, s3://bucket/prefix, embedded:<name> or a "
        "local directory (default: `model` in the config).",
    ),
    config: Path = typer.Option(None, "--config", "-c", help="serve config YAML."),
    host: str = typer.Option(None, "--host", help="interface to bind (default: config)."),
    port: int = typer.Option(None, "--port", "-p", help="HTTP port (default: config)."),
    name: str = typer.Option(None, "--name", help="model name clients ask for."),
    env: str = typer.Option(None, "--env", "-e", help="config overlay <name>.<env>.yaml to apply."),
    overrides: list[str] = typer.Option(
        None, "--set", help="override a config value for this run: key.sub=value"
    ),
) -> None:
    """Serve a model over the OpenAI API and KServe's v1/v2 protocols on one port."""
    from tuneops.core.config import option_overrides
    from workloads.serve.config import load_serve_config
    from workloads.serve.server import run_server

    extra = option_overrides(
        overrides, {"server.host": host, "server.port": port, "model_name": name}
    )
    cfg = load_serve_config(config, env=env, overrides=extra)
    run_server(cfg, model or cfg.model)
