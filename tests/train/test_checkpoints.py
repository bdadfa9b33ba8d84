"""Checkpoint validity and the S3 copy (moto's server on loopback stands in for S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.train import checkpoints


def _fake_checkpoint(root: Path, step: int, *, complete: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (path / "adapter_model.safetensors").write_bytes(b"weights-%d" % step)
    (path / "nested").mkdir()
    (path / "nested" / "rng_state.pth").write_bytes(b"rng")
    if complete:
        checkpoints.mark_complete(path, step)
    return path


def test_newest_valid_skips_and_prunes_half_written(tmp_path):
    _fake_checkpoint(tmp_path, 5)
    _fake_checkpoint(tmp_path, 10)
    half = _fake_checkpoint(tmp_path, 15, complete=False)
    assert checkpoints.newest_valid(tmp_path).name == "checkpoint-10"
    assert half.exists()
    assert checkpoints.newest_valid(tmp_path, prune_invalid=True).name == "checkpoint-10"
    assert not half.exists()
    assert checkpoints.newest_valid(tmp_path / "missing") is None


@pytest.fixture
def s3_endpoint(monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3").create_bucket(Bucket="ckpts")
    yield "s3://ckpts/runs/r1"
    server.stop()


def test_s3_copy_resumes_from_the_newest_uploaded_checkpoint(tmp_path, s3_endpoint):
    import boto3

    local = tmp_path / "local"
    checkpoints.upload(_fake_checkpoint(local, 5), s3_endpoint)
    checkpoints.upload(_fake_checkpoint(local, 10), s3_endpoint)
    # An upload cut short: files but no marker. It must not be chosen.
    s3 = boto3.client("s3")
    s3.put_object(Bucket="ckpts", Key="runs/r1/checkpoint-15/trainer_state.json", Body=b"{}")

    assert checkpoints.newest_valid_remote(s3_endpoint) == f"{s3_endpoint}/checkpoint-10"

    fresh = tmp_path / "fresh"  # a new machine: nothing local
    found = checkpoints.find_resume_point(fresh, s3_endpoint)
    assert found == fresh / "checkpoint-10"
    assert (found / "nested" / "rng_state.pth").read_bytes() == b"rng"
    assert (found / "adapter_model.safetensors").read_bytes() == b"weights-10"
    assert checkpoints.is_valid(found)


def test_s3_errors_are_one_line(tmp_path, s3_endpoint):
    from tuneops.core.errors import UserError

    with pytest.raises(UserError, match="cannot upload checkpoint"):
        checkpoints.upload(_fake_checkpoint(tmp_path, 1), "s3://no-such-bucket/x")
