"""The S3 copy of checkpoints when S3 fails: moto's server behind a proxy that drops or stalls
connections, during a real (tiny) training. Nothing of S3, boto3 or the trainer is mocked."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import boto3
import pytest
from train_helpers import config_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fault_proxy import moto_behind_proxy

from workloads.train import checkpoints
from workloads.train.trainer import run_training

RETRY = [
    "checkpoint.upload_retry.attempts=3",
    "checkpoint.upload_retry.backoff_s=0.1",
    "checkpoint.upload_retry.max_backoff_s=0.2",
    "checkpoint.upload_retry.timeout_s=2",
]


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto_behind_proxy("ckpts", stall_s=20) as (moto_url, bucket, proxy):
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield moto_url, bucket, proxy


def _config(model: Path, snapshot: Path, out: Path, bucket: str, steps: int):
    return config_for(
        model,
        snapshot,
        out,
        "run_name=flaky",
        f"checkpoint.uri=s3://{bucket}/runs",
        "checkpoint.every_steps=5",
        "checkpoint.keep=10",
        f"optim.max_steps={steps}",
        "optim.batch_size=1",
        "data.max_length=128",
        "data.max_eval_examples=4",
        "merge=false",
        "tracking.log_model=false",
        *RETRY,
    )


def _markers(moto_url: str, bucket: str) -> list[str]:
    """The checkpoints of the run whose copy in S3 is complete (marker uploaded)."""
    client = boto3.client("s3", endpoint_url=moto_url)
    listing = client.list_objects_v2(Bucket=bucket, Prefix="runs/flaky/")
    keys = [obj["Key"] for obj in listing.get("Contents", [])]
    return sorted(k.split("/")[2] for k in keys if k.endswith(checkpoints.MARKER))


def test_failed_copy_keeps_the_checkpoint_training_goes_on_and_resume_from_s3_works(
    tiny_model_dir, snapshot_dir, tmp_path, s3, caplog
):
    moto_url, bucket, proxy = s3
    # checkpoint-5: S3 drops every try of its first file; checkpoint-10: the first request
    # times out (held unanswered by the proxy), the retry goes through.
    proxy.fail_next(3, "drop")
    proxy.fail_next(1, "stall")
    first = tmp_path / "first"
    with caplog.at_level(logging.WARNING):
        result = run_training(_config(tiny_model_dir, snapshot_dir, first, bucket, 10))

    assert result.global_step == 10  # training went on past the failed copy
    assert proxy.faulted == 4
    given_up = [r.getMessage() for r in caplog.records if "stays local only" in r.getMessage()]
    assert len(given_up) == 1 and "\n" not in given_up[0]
    assert given_up[0].startswith(f"copy of checkpoint-5 (s3://{bucket}/runs/flaky/checkpoint-5/")
    assert "S3 did not take it after 3 tries" in given_up[0]
    retried = [r.getMessage() for r in caplog.records if "failed (" in r.getMessage()]
    assert sum("checkpoint-5" in m for m in retried) == 2  # tries 1 and 2 wait, the 3rd ends
    assert any("checkpoint-10" in m and "ReadTimeoutError" in m for m in retried)
    kept = first / "checkpoints" / "checkpoint-5"
    assert checkpoints.is_valid(kept)  # the local checkpoint is untouched
    assert _markers(moto_url, bucket) == ["checkpoint-10"]

    # A new machine: nothing local, the run's S3 copy has checkpoint-10 and S3 answers again.
    second = tmp_path / "second"
    resumed = run_training(_config(tiny_model_dir, snapshot_dir, second, bucket, 15), resume=True)
    assert resumed.resumed_from == str(second / "checkpoints" / "checkpoint-10")
    assert resumed.global_step == 15
    assert _markers(moto_url, bucket) == ["checkpoint-10", "checkpoint-15"]
    assert proxy.faulted == 4
