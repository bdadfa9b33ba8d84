"""Staging a dataset snapshot from S3 into a training pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from tuneops.core.errors import UserError
from workloads.deploy.stage import stage

BUCKET = "tuneops-test-datasets"


@pytest.fixture
def s3_server(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are per process, not per server: start each test from an empty S3.
    requests.post(f"{endpoint}/moto-api/reset", timeout=10).raise_for_status()
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def _upload(client, sid: str, marker: str) -> None:
    prefix = f"snapshots/cloudops/{sid}"
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/train.jsonl", Body=marker.encode())
    client.put_object(
        Bucket=BUCKET, Key=f"{prefix}/manifest.json", Body=json.dumps({"snapshot_id": sid})
    )


def test_stage_takes_the_newest_or_the_named_snapshot(s3_server, tmp_path):
    _upload(s3_server, "old111", "old")
    time.sleep(1.1)  # S3 timestamps have one-second resolution
    _upload(s3_server, "new222", "new")
    source = f"s3://{BUCKET}/snapshots"

    assert stage(source, "cloudops", root=tmp_path) == "cloudops/new222"
    assert (tmp_path / "cloudops" / "new222" / "train.jsonl").read_text() == "new"
    assert (tmp_path / "cloudops" / "LATEST").read_text().strip() == "new222"

    assert stage(source, "cloudops/old111", root=tmp_path) == "cloudops/old111"
    assert (tmp_path / "cloudops" / "old111" / "train.jsonl").read_text() == "old"

    with pytest.raises(UserError, match="no snapshot"):
        stage(source, "other", root=tmp_path)
    with pytest.raises(UserError, match="holds no snapshot"):
        stage(source, "cloudops/missing", root=tmp_path)
    with pytest.raises(UserError, match="s3://"):
        stage("/local/path", "cloudops", root=tmp_path)


def test_stage_execs_the_command_with_the_staged_dataset(s3_server, tmp_path):
    _upload(s3_server, "abc", "rows")
    env = {**os.environ, "TUNEOPS_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "workloads.deploy.stage",
            "--from",
            f"s3://{BUCKET}/snapshots",
            "--dataset",
            "cloudops",
            "--",
            sys.executable,
            "-c",
            "import sys; print('ARGS', sys.argv[1:])",
            "--keep",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "staged dataset cloudops/abc" in proc.stdout
    assert "ARGS ['--keep', '--set', 'dataset=cloudops/abc']" in proc.stdout
    assert (tmp_path / "datasets" / "cloudops" / "abc" / "manifest.json").is_file()
