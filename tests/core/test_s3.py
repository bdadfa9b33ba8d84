"""Downloading an S3 prefix never writes outside the destination, whatever the keys say."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from tuneops.core.errors import UserError
from tuneops.core.s3 import download_prefix, safe_target, split_uri


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="bucket")
        yield client


def test_a_prefix_downloads_with_its_relative_paths(s3, tmp_path):
    s3.put_object(Bucket="bucket", Key="m/v1/config.json", Body=b"{}")
    s3.put_object(Bucket="bucket", Key="m/v1/sub/w.bin", Body=b"w")
    s3.put_object(Bucket="bucket", Key="m/v10/other.bin", Body=b"x")  # another prefix: left alone
    assert download_prefix(s3, "bucket", "m/v1", tmp_path) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        "config.json",
        "sub/w.bin",
    ]


@pytest.mark.parametrize(
    "key",
    ["m/v1/../../escaped.txt", "m/v1/sub/../../../escaped.txt", "m/v1//tmp/escaped.txt"],
)
def test_a_key_that_leaves_the_destination_is_refused(s3, tmp_path, key):
    dest = tmp_path / "dest"
    dest.mkdir()
    s3.put_object(Bucket="bucket", Key=key, Body=b"planted")
    with pytest.raises(UserError, match="outside"):
        download_prefix(s3, "bucket", "m/v1", dest)
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "/etc/passwd", "a/..\\..\\x"])
def test_safe_target_refuses_escapes(tmp_path, rel):
    with pytest.raises(UserError, match="outside"):
        safe_target(tmp_path, rel, "s3://b/k")


def test_safe_target_keeps_plain_names(tmp_path):
    assert safe_target(tmp_path, "a/b:c/d.json", "s3://b/k") == (tmp_path / "a/b:c/d.json")


@pytest.mark.parametrize(("uri", "message"), [("b/x", "s3://"), ("s3:///x", "bucket name")])
def test_split_uri_names_what_is_wrong(uri, message):
    with pytest.raises(UserError, match=message):
        split_uri(uri)
