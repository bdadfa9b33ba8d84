"""Demo step: PostgreSQL and the MLflow tracking server on it, for every step after this one.

The later steps log to the server's URL, which the state carries. Where the PostgreSQL server
binaries are missing, MLflow stays on its SQLite file and the report says so.

Both were usually started in the background already, as soon as the apply ended
(``infra.platform_job``); starting them here is then a health check. Had that start failed,
this one runs it again and says why.
"""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState
from tuneops.core.errors import MissingToolError

console = Console(highlight=False, soft_wrap=True)


def _wait_for_background_start(state: DemoState) -> None:
    job = state.platform_start
    if job is None or job.proc is None:
        return
    job.wait_saying(console.print)
    console.print(job.line() + ("" if job.returncode == 0 else "; starting it here"))


def run(state: DemoState) -> DemoState:
    from infra.local.mlflow_server import MlflowServerService
    from infra.local.postgres import PostgresService, load_platform_settings

    _wait_for_background_start(state)
    settings = load_platform_settings()
    postgres = PostgresService(settings=settings)
    try:
        console.print(postgres.start().line())
    except MissingToolError as exc:
        console.print(f"[yellow]{exc}; MLflow stays on SQLite[/]")
        return state.with_report(f"mlflow: SQLite at {state.tracking} ({exc})")
    cloud = state.cloud
    server = MlflowServerService(
        settings=settings,
        s3_endpoint=cloud.endpoint if cloud else None,
        region=cloud.region if cloud else None,
        postgres=postgres,
        bucket=settings.mlflow.artifacts_bucket or (cloud.artifacts_bucket if cloud else None),
    )
    console.print(server.start().line())
    return state.with_report(
        f"mlflow: tracking server {server.url} (UI in a browser), runs in PostgreSQL "
        f"{postgres.url}, artifacts in {server.artifacts_destination} on {server.s3_endpoint}; "
        "`tuneops local down` stops it",
        tracking_uri=server.url,
        artifacts_destination=server.artifacts_destination,
    )
