"""The MLflow tracking server of the local platform: PostgreSQL backend, artifacts in moto's S3.

The same topology as the cluster (RDS + the artifacts bucket): runs, params and metrics land in
the local PostgreSQL, and the server proxies artifact uploads to
``s3://<artifacts bucket>/<prefix>`` on moto's S3 endpoint. The bucket is the one
``make apply ENV=local`` creates; the server refuses to start without it.
"""

from __future__ import annotations

from pathlib import Path

from infra.local.postgres import LocalPlatformSettings, PostgresService, load_platform_settings
from infra.local.service import Service, ServiceStatus, python, register
from tuneops.core.errors import UserError

# moto accepts any credentials; these keep boto3 from looking for real ones.
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def artifacts_bucket(settings: LocalPlatformSettings) -> str:
    if settings.mlflow.artifacts_bucket:
        return settings.mlflow.artifacts_bucket
    from infra.config import load_environment

    return load_environment("local").bucket_names()["artifacts"]


def moto_environment(endpoint: str, region: str) -> dict[str, str]:
    return {
        **MOTO_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


@register
class MlflowServerService(Service):
    name = "mlflow"
    order = 30
    start_timeout_s = 180.0  # the first start creates MLflow's tables
    health_path = "/health"

    def __init__(
        self,
        root: Path | None = None,
        settings: LocalPlatformSettings | None = None,
        *,
        s3_endpoint: str | None = None,
        region: str | None = None,
        postgres: PostgresService | None = None,
    ) -> None:
        self.settings = settings or load_platform_settings()
        super().__init__(root, host=self.settings.host, port=self.settings.mlflow.port)
        self.postgres = postgres or PostgresService(self.root.parent, self.settings)
        if s3_endpoint is None or region is None:
            from infra.config import load_environment

            env = load_environment("local")
            s3_endpoint = s3_endpoint or env.local_endpoint
            region = region or env.region
        self.s3_endpoint = s3_endpoint.rstrip("/")
        self.region = region
        self.bucket = artifacts_bucket(self.settings)
        prefix = self.settings.mlflow.artifacts_prefix.strip("/")
        self.artifacts_destination = (
            f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"
        )

    def environment(self) -> dict[str, str]:
        return moto_environment(self.s3_endpoint, self.region)

    def command(self) -> list[str]:
        return [
            python(),
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.postgres.sqlalchemy_url,
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.settings.mlflow.workers),
        ]

    def check_dependencies(self) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.postgres.healthy():
            raise UserError(
                f"mlflow needs PostgreSQL at {self.postgres.url}: start it first "
                "(`tuneops local up` starts both)"
            )
        s3 = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name=self.region,
            aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise UserError(
                f"the MLflow artifacts bucket {self.bucket} does not exist in the local S3: run "
                "`make plan ENV=local && make apply ENV=local` first"
            ) from exc
        except BotoCoreError as exc:
            raise UserError(
                f"moto's S3 at {self.s3_endpoint} does not answer ({type(exc).__name__}): "
                "`tuneops local up` starts it"
            ) from exc

    def start(self) -> ServiceStatus:
        if not (self.running() and self.healthy()):
            self.check_dependencies()
        return super().start()


def demo_step(ctx) -> None:
    """`make demo`: PostgreSQL and the MLflow server on it, for every step after this one.

    Sets MLFLOW_TRACKING_URI (and ``ctx["tracking_uri"]``) so later steps log to the server.
    Where the PostgreSQL server binaries are missing, MLflow stays on its SQLite file and the
    report says so.
    """
    import os

    from rich.console import Console

    from tuneops.core.errors import MissingToolError

    console = Console(highlight=False, soft_wrap=True)
    settings = load_platform_settings()
    endpoint, region = ctx.get("local_endpoint"), ctx.get("aws_region")
    postgres = PostgresService(settings=settings)
    try:
        console.print(postgres.start().line())
    except MissingToolError as exc:
        from tuneops.core.paths import default_tracking_uri

        ctx["tracking_uri"] = default_tracking_uri()
        ctx.report.append(f"mlflow: SQLite at {ctx['tracking_uri']} ({exc})")
        console.print(f"[yellow]{exc}; MLflow stays on SQLite[/]")
        return
    server = MlflowServerService(settings=settings, s3_endpoint=endpoint, region=region)
    console.print(server.start().line())
    os.environ["MLFLOW_TRACKING_URI"] = server.url
    ctx["tracking_uri"] = server.url
    ctx["mlflow_artifacts_destination"] = server.artifacts_destination
    ctx.report.append(
        f"mlflow: tracking server {server.url} (UI in a browser), runs in PostgreSQL "
        f"{postgres.url}, artifacts in {server.artifacts_destination} on {server.s3_endpoint}; "
        "`tuneops local down` stops it"
    )
