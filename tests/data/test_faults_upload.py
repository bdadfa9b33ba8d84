"""`tuneops data build --upload` when S3 fails: moto's server behind a proxy that drops or
stalls connections. Nothing of S3 or boto3 is mocked; the CLI runs as a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest
from fault_proxy import moto_behind_proxy

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3(monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with moto_behind_proxy("datasets", stall_s=20) as (moto_url, bucket, proxy):
        yield moto_url, bucket, proxy


def _build(config, private_cache, proxy, bucket: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": proxy.url}
    env["TUNEOPS_CACHE_DIR"] = str(private_cache)
    args = ["data", "build", "--config", str(config), "--upload", f"s3://{bucket}/snaps"]
    for item in ["attempts=3", "backoff_s=0.1", "max_backoff_s=0.2", "timeout_s=2"]:
        args += ["--set", f"upload_retry.{item}"]
    return subprocess.run(
        [sys.executable, "-m", "tuneops.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _keys(moto_url: str, bucket: str) -> list[str]:
    listing = boto3.client("s3", endpoint_url=moto_url).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_upload_retries_then_fails_in_one_line_and_succeeds_once_s3_answers(
    s3, small_config, private_cache
):
    moto_url, bucket, proxy = s3
    config = small_config()

    # S3 drops every connection: each try of the first file is one connection, three in all.
    proxy.fail_next(100, "drop")
    failed = _build(config, private_cache, proxy, bucket)
    assert failed.returncode == 2, failed.stderr[-2000:]
    assert proxy.faulted == 3 and proxy.passed == 0
    assert "Traceback" not in failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: dataset upload (s3://{bucket}/snaps/tiny/")
    assert "S3 did not take it after 3 tries" in error
    assert "ConnectionClosedError" in error
    assert failed.stderr.count("try 1 of 3 failed") == failed.stderr.count("try 2 of 3 failed") == 1
    kept = error.rsplit("the snapshot is still at ", 1)[1].strip()
    assert (private_cache / "datasets" / "tiny").is_dir() and kept.startswith(str(private_cache))
    assert sorted(p.name for p in (private_cache / "datasets" / "tiny").iterdir() if p.is_dir())
    assert _keys(moto_url, bucket) == []

    # S3 answers again, after one request that times out (the proxy holds it unanswered).
    proxy.faults.clear()
    proxy.faulted = 0
    proxy.fail_next(1, "stall")
    done = _build(config, private_cache, proxy, bucket)
    assert done.returncode == 0, done.stderr[-2000:]
    assert proxy.faulted == 1 and proxy.passed >= 1
    assert "ReadTimeoutError" in done.stderr and "try 1 of 3 failed" in done.stderr
    snapshot = next(line for line in done.stderr.splitlines() if "uploaded to" in line)
    prefix = snapshot.split(f"uploaded to s3://{bucket}/", 1)[1].strip()
    names = sorted(key.rsplit("/", 1)[1] for key in _keys(moto_url, bucket))
    assert all(key.startswith(prefix + "/") for key in _keys(moto_url, bucket))
    local = sorted(p.name for p in (private_cache / "datasets" / prefix.split("/", 1)[1]).iterdir())
    assert names == local and "manifest.json" in names
