"""The few S3 operations every area needs: parse an ``s3://`` URI, fetch a prefix into a folder.

Callers pass their own boto3 client (``AWS_ENDPOINT_URL`` points it at moto's server locally)
and turn boto errors into a ``UserError`` that names what they were doing.
"""

from __future__ import annotations

from pathlib import Path

from tuneops.core.errors import UserError


def split_uri(uri: str, *, what: str = "location") -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``."""
    if not uri.startswith("s3://"):
        raise UserError(f"{what} {uri!r}: give an s3://bucket/prefix URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise UserError(f"{what} {uri!r}: the bucket name is missing")
    return bucket, prefix.strip("/")


def safe_target(dest: Path, rel: str, source: str) -> Path:
    """``dest / rel``, refused when ``rel`` would land outside ``dest`` (a ``..`` segment or a
    leading ``/``): an object store's keys are not trusted paths."""
    target = dest / rel
    escapes = rel.startswith("/") or ".." in rel.replace("\\", "/").split("/")
    if escapes or not target.resolve().is_relative_to(dest.resolve()):
        raise UserError(f"{source}: the key would be written outside {dest}; refusing it")
    return target


def download_prefix(client, bucket: str, prefix: str, dest: Path) -> int:
    """Download every object under ``prefix/`` into ``dest``, keeping relative paths.

    Only whole path segments match: ``models/v1`` does not pick up ``models/v10/...``. A key
    that would be written outside ``dest`` stops the download with a ``UserError`` before that
    object is fetched (callers download into a temporary folder, so nothing half is kept).
    Returns how many files were written.
    """
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base) :]
            if not rel or rel.endswith("/"):
                continue
            target = safe_target(dest, rel, f"s3://{bucket}/{obj['Key']}")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
            count += 1
    return count
