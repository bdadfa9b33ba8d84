"""The MLflow tracking server of the local platform: PostgreSQL backend, artifacts in moto's S3.

The same topology as the cluster (RDS + the artifacts bucket): runs, params and metrics land in
the local PostgreSQL, and the server proxies artifact uploads to
``s3://<artifacts bucket>/<prefix>`` on moto's S3 endpoint. The bucket is the one
``make apply ENV=local`` creates; the server refuses to start without it.

The server is healthy when it answers a request that reads the backend store, not only
``/health`` (which answers while PostgreSQL is down). When PostgreSQL comes back after a crash,
the server's connection pool checks each connection before use and reconnects; should the
store still fail, ``start`` restarts the server.
"""

from __future__ import annotations

from pathlib import Path

from infra.config import load_environment
from infra.local.postgres import LocalPlatformSettings, PostgresService, load_platform_settings
from infra.local.service import Service, ServiceStatus, python
from tuneops.core.errors import UserError
from tuneops.core.process import http_ok

# moto accepts any credentials; these keep boto3 from looking for real ones.
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def moto_environment(endpoint: str, region: str) -> dict[str, str]:
    return {
        **MOTO_CREDENTIALS,
        "AWS_DEFAULT_REGION": region,
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
    }


class MlflowServerService(Service):
    name = "mlflow"
    start_timeout_s = 180.0  # the first start creates MLflow's tables
    health_path = "/health"
    # A read of the backend store: it answers 200 only while PostgreSQL does.
    store_probe = "/api/2.0/mlflow/experiments/search?max_results=1"

    def __init__(
        self,
        root: Path | None = None,
        settings: LocalPlatformSettings | None = None,
        *,
        s3_endpoint: str | None = None,
        region: str | None = None,
        postgres: PostgresService | None = None,
        bucket: str | None = None,
    ) -> None:
        self.settings = settings or load_platform_settings()
        super().__init__(root, host=self.settings.host, port=self.settings.mlflow.port)
        self.postgres = postgres or PostgresService(self.root.parent, self.settings)
        bucket = bucket or self.settings.mlflow.artifacts_bucket
        if s3_endpoint is None or region is None or bucket is None:
            # What was not handed in comes from the local environment (the artifacts bucket
            # that `make apply ENV=local` creates).
            env = load_environment("local")
            s3_endpoint = s3_endpoint or env.local_endpoint
            region = region or env.region
            bucket = bucket or env.bucket_names()["artifacts"]
        self.s3_endpoint = s3_endpoint.rstrip("/")
        self.region = region
        self.bucket = bucket
        prefix = self.settings.mlflow.artifacts_prefix.strip("/")
        self.artifacts_destination = (
            f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"
        )

    def environment(self) -> dict[str, str]:
        job_execution = "true" if self.settings.mlflow.job_execution else "false"
        return {
            **moto_environment(self.s3_endpoint, self.region),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": job_execution,
        }

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

    def healthy(self) -> bool:
        return http_ok(f"{self.url}{self.store_probe}")

    def diagnose(self) -> str:
        if not super().healthy():
            return super().diagnose()
        if not self.postgres.healthy():
            return f"it answers, but its backend store, PostgreSQL at {self.postgres.url}, does not"
        return "it answers, but its backend store fails; see its log"

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
