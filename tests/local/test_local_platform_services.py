"""The local platform's PostgreSQL, MLflow server and model server, for real, on loopback."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from infra.local.mlflow_server import MOTO_CREDENTIALS, MlflowServerService
from infra.local.model_server import ModelServerService
from infra.local.moto import MotoService
from infra.local.postgres import (
    LocalPlatformSettings,
    MlflowSettings,
    ModelServerSettings,
    PostgresService,
    PostgresSettings,
)
from tuneops.core.errors import UserError

REGION = "us-east-1"
BUCKET = "tuneops-test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _service_root() -> Path:
    """A folder PostgreSQL's unprivileged account can enter (pytest's tmp folders are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="tuneops-local-test-"))
    os.chmod(root, 0o755)
    return root


@pytest.fixture(scope="module")
def platform():
    """moto's S3 with the artifacts bucket, PostgreSQL and the MLflow server on free ports."""
    root = _service_root()
    settings = LocalPlatformSettings(
        postgres=PostgresSettings(port=_free_port()),
        mlflow=MlflowSettings(port=_free_port(), artifacts_bucket=BUCKET),
        model_server=ModelServerSettings(port=_free_port()),
    )
    moto = MotoService(root, endpoint=f"http://127.0.0.1:{_free_port()}")
    postgres = PostgresService(root, settings)
    mlflow = MlflowServerService(
        root, settings, s3_endpoint=moto.url, region=REGION, postgres=postgres
    )
    started = []
    try:
        moto.start()
        started.append(moto)
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name=REGION,
            aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=BUCKET)
        postgres.start()
        started.append(postgres)
        mlflow.start()
        started.append(mlflow)
        yield {
            "root": root,
            "settings": settings,
            "moto": moto,
            "postgres": postgres,
            "mlflow": mlflow,
            "s3": s3,
        }
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                service.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
def test_a_run_lands_in_postgres_and_its_artifacts_in_s3(platform):
    from mlflow.tracking import MlflowClient

    mlflow_svc, postgres, s3 = platform["mlflow"], platform["postgres"], platform["s3"]
    assert mlflow_svc.status().healthy and postgres.status().healthy
    client = MlflowClient(tracking_uri=mlflow_svc.url)
    experiment = client.create_experiment(f"local-platform-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    client.log_param(run_id, "method", "lora")
    client.log_metric(run_id, "eval_loss", 1.25, step=3)
    client.log_text(run_id, "the local platform works\n", "notes/report.txt")
    client.set_terminated(run_id)

    # Runs, params and metrics are rows in the local PostgreSQL.
    with contextlib.closing(postgres.connect(postgres.database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, artifact_uri FROM runs WHERE run_uuid = %s", (run_id,))
        status, artifact_uri = cur.fetchone()
        cur.execute("SELECT value FROM params WHERE run_uuid = %s AND key = 'method'", (run_id,))
        assert cur.fetchone() == ("lora",)
        cur.execute(
            "SELECT value, step FROM metrics WHERE run_uuid = %s AND key = 'eval_loss'", (run_id,)
        )
        assert cur.fetchone() == (1.25, 3)
    assert status == "FINISHED"
    assert artifact_uri.startswith("mlflow-artifacts:/")

    # The artifact went through the server's proxy into the bucket in moto's S3.
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
    keys = [obj["Key"] for obj in listed.get("Contents", [])]
    (key,) = [k for k in keys if run_id in k and k.endswith("notes/report.txt")]
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert body == b"the local platform works\n"


@pytest.mark.e2e
def test_start_is_idempotent_and_status_reports_health(platform):
    mlflow_svc = platform["mlflow"]
    pid = mlflow_svc.pid()
    again = mlflow_svc.start()
    assert again.healthy and again.pid == pid
    assert "healthy" in platform["postgres"].status().line()
    assert (platform["root"] / "mlflow" / "service.log").stat().st_size > 0
    assert (platform["root"] / "postgres" / "service.log").stat().st_size > 0


@pytest.mark.e2e
def test_mlflow_runs_without_its_job_runner(platform):
    """The tracking server and its uvicorn worker only: none of MLflow's Huey job consumers,
    which the platform never uses (``mlflow.job_execution: false``)."""
    import psutil

    server = psutil.Process(platform["mlflow"].pid())
    commands = [" ".join(p.cmdline()) for p in [server, *server.children(recursive=True)]]
    assert any("uvicorn" in command for command in commands), commands
    assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
    assert platform["mlflow"].environment()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


@pytest.mark.e2e
def test_mlflow_refuses_to_start_without_its_bucket(platform, tmp_path):
    settings = platform["settings"].model_copy(deep=True)
    settings.mlflow.artifacts_bucket = "no-such-bucket"
    settings.mlflow.port = _free_port()
    service = MlflowServerService(
        tmp_path,
        settings,
        s3_endpoint=platform["moto"].url,
        region=REGION,
        postgres=platform["postgres"],
    )
    with pytest.raises(UserError, match="make apply ENV=local"):
        service.start()
    assert not service.running()


@pytest.mark.e2e
def test_model_server_serves_and_stops_cleanly(platform, tiny_model_dir):
    server = ModelServerService(
        platform["root"], platform["settings"], model=str(tiny_model_dir), mlflow=platform["mlflow"]
    )
    try:
        status = server.start()
        assert status.healthy
        # Closed like any other: the token made at the first start is the one it takes.
        token = server.token_file.read_text().strip()
        assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
        assert f"bearer token in {server.token_file}" in server.status().line()
        auth = {"Authorization": f"Bearer {token}"}
        models = requests.get(f"{server.url}/openai/v1/models", headers=auth, timeout=10)
        assert models.status_code == 200 and models.json()["data"]
        assert requests.get(f"{server.url}/openai/v1/models", timeout=10).status_code == 401
        assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    finally:
        server.stop()
    assert not server.running() and not _listening(platform["settings"].model_server.port)


def test_the_model_server_token_is_made_once_readable_by_its_owner_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEOPS_SERVE_TOKEN", "from-the-shell")
    settings = LocalPlatformSettings(model_server=ModelServerSettings(port=_free_port()))
    server = ModelServerService(tmp_path, settings, mlflow=object())
    assert not server.token_file.exists()  # nothing is written before a start
    token = server.ensure_token()
    assert len(token) >= 32 and server.token_file.read_text() == token + "\n"
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    assert server.ensure_token() == token  # reused at every later start
    server.token_file.chmod(0o644)
    assert server.ensure_token() == token
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    # The server reads the file alone, whatever the calling shell exports.
    command = server.command()
    assert f"auth.token_file={server.token_file}" in command and "auth.token_env=null" in command
    line = server.status().line()
    assert line.startswith("model-server") and f"bearer token in {server.token_file}" in line


@pytest.mark.e2e
def test_postgres_down_is_clean():
    root = _service_root()
    settings = LocalPlatformSettings(postgres=PostgresSettings(port=_free_port()))
    postgres = PostgresService(root, settings)
    try:
        postgres.start()
        assert postgres.healthy() and (root / "postgres" / "data" / "PG_VERSION").is_file()
        assert postgres.stop()
        assert not postgres.running() and not _listening(settings.postgres.port)
        assert not (root / "postgres" / "pid").exists()
        # The data stays for the next start.
        postgres.start()
        assert postgres.healthy()
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
