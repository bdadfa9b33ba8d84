"""PostgreSQL killed under the local MLflow server, through the real command line.

`tuneops local up` starts moto, PostgreSQL and the MLflow server in a cache of their own, on
free loopback ports; runs are logged through the server; the postmaster gets SIGKILL. Then
`tuneops local status` must say PostgreSQL is down and MLflow unhealthy, and exit non-zero;
`tuneops local up` must bring both back (a killed server leaves a stale postmaster.pid), with
every run logged before, and a new run can be logged. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import pytest

from infra.local.mlflow_server import MOTO_CREDENTIALS
from infra.local.processes import process_running
from tuneops.core.process import free_port, port_in_use

BUCKET = "tuneops-test-artifacts"
REGION = "us-east-1"


def _tuneops(args: list[str], env: dict[str, str], timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "tuneops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _line(output: str, name: str) -> str:
    (line,) = [x for x in output.splitlines() if x.split(" ", 1)[0] == name]
    return line


@pytest.fixture
def local_platform():
    """The `tuneops local` commands on a cache of their own (a folder PostgreSQL's account may
    enter when the tests run as root) and free ports; everything is stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="tuneops-pg-fault-"))
    base.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEOPS_", "MLFLOW_", "AWS_"))}
    env["TUNEOPS_CACHE_DIR"] = str(base / "cache")
    ports = {name: free_port() for name in ("moto", "postgres", "mlflow", "model_server")}
    sets = [
        f"local_endpoint=http://127.0.0.1:{ports['moto']}",
        f"platform.postgres.port={ports['postgres']}",
        f"platform.mlflow.port={ports['mlflow']}",
        f"platform.mlflow.artifacts_bucket={BUCKET}",
        f"platform.model_server.port={ports['model_server']}",
        "platform.model_server.enabled=false",
    ]
    options = [arg for item in sets for arg in ("--set", item)]

    def run(*args: str, timeout: float = 300):
        return _tuneops([*args, *options], env, timeout)

    try:
        yield {"run": run, "ports": ports, "cache": base / "cache"}
    finally:
        run("local", "down", timeout=120)
        for pid_file in (base / "cache" / "local").glob("*/pid"):  # whatever down left
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        data = base / "cache" / "local" / "postgres" / "data"
        if data.is_symlink():
            shutil.rmtree(Path(os.readlink(data)).parent, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _log_runs(tracking_uri: str, count: int) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("pg-fault") or client.get_experiment(
        client.create_experiment("pg-fault")
    )
    logged = {}
    for index in range(count):
        run_id = client.create_run(experiment.experiment_id).info.run_id
        loss = 1.0 + index / 10
        client.log_param(run_id, "seed", str(index))
        client.log_metric(run_id, "eval_loss", loss, step=index)
        client.set_terminated(run_id)
        logged[run_id] = loss
    return logged


def _start(run, ports: dict[str, int]) -> None:
    """moto first, the artifacts bucket in it, then the rest; all healthy."""
    moto = run("local", "up", "--only", "moto")
    assert moto.returncode == 0, moto.stderr[-3000:]
    boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{ports['moto']}",
        region_name=REGION,
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=BUCKET)
    up = run("local", "up")
    assert up.returncode == 0, up.stderr[-3000:]
    status = run("local", "status")
    assert status.returncode == 0, status.stdout
    for name in ("postgres", "mlflow"):
        assert "healthy" in _line(status.stdout, name)


def _kill_postmaster(cache: Path, port: int) -> int:
    """SIGKILL the real postmaster (no shutdown, its lock files stay); its pid."""
    postmaster = int((cache / "local" / "postgres" / "pid").read_text())
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        process_running(postmaster) or port_in_use("127.0.0.1", port)
    ):
        time.sleep(0.1)
    assert not process_running(postmaster)
    return postmaster


@pytest.mark.e2e
def test_postgres_killed_is_reported_and_local_up_brings_it_back_with_every_run(
    local_platform,
):
    from mlflow.tracking import MlflowClient

    run, ports = local_platform["run"], local_platform["ports"]
    _start(run, ports)
    tracking_uri = f"http://127.0.0.1:{ports['mlflow']}"
    logged = _log_runs(tracking_uri, 3)
    postmaster = _kill_postmaster(local_platform["cache"], ports["postgres"])

    down = run("local", "status")
    assert down.returncode == 1, down.stdout + down.stderr
    postgres_line = _line(down.stdout, "postgres")
    assert "DOWN" in postgres_line and f"pid {postmaster}" in postgres_line
    assert "killed or crashed" in postgres_line
    mlflow_line = _line(down.stdout, "mlflow")
    assert "UNHEALTHY" in mlflow_line and "PostgreSQL" in mlflow_line
    assert "postgres down, mlflow unhealthy: `tuneops local up` brings them back" in down.stdout
    assert "Traceback" not in down.stderr

    back = run("local", "up")
    assert back.returncode == 0, back.stdout + back.stderr[-3000:]
    postgres_line = _line(back.stdout, "postgres")
    assert "healthy" in postgres_line and "recovered after a crash" in postgres_line
    assert f"removed postmaster.pid of pid {postmaster}" in postgres_line
    again = run("local", "status")
    assert again.returncode == 0, again.stdout
    assert "healthy" in _line(again.stdout, "mlflow")

    # Every run logged before the kill is there, through the same server, with its data.
    client = MlflowClient(tracking_uri=tracking_uri)
    for run_id, loss in logged.items():
        found = client.get_run(run_id)
        assert found.info.status == "FINISHED"
        assert found.data.metrics["eval_loss"] == pytest.approx(loss)
    experiment = client.get_experiment_by_name("pg-fault")
    assert len(client.search_runs([experiment.experiment_id])) == len(logged)
    # ... and a new run lands.
    (new_id,) = _log_runs(tracking_uri, 1)
    assert client.get_run(new_id).data.params["seed"] == "0"
    assert len(client.search_runs([experiment.experiment_id])) == len(logged) + 1
