"""Checkpoints that can be trusted: a completion marker, an optional S3 copy, and resume lookup.

The Trainer writes ``checkpoint-<step>/`` file by file, so a process killed mid-save leaves a
half directory. After the Trainer has finished a save, the marker ``tuneops-complete.json`` is
written atomically into it (and, for S3, uploaded after every other file). Only checkpoints with
the marker count as valid; resume picks the newest valid one and removes half-written ones.

The S3 copy retries what can pass (refused, dropped or timed-out requests, 5xx) per
``checkpoint.upload_retry`` (``workloads.data.s3_retry``). A copy that still fails leaves the
local checkpoint as it is: the training goes on and the next checkpoint is copied in its turn.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir, atomic_write_json
from tuneops.core.s3 import download_prefix, split_uri
from workloads.data.s3_retry import S3Retry, call, describe, s3_client, upload_files

log = logging.getLogger(__name__)

MARKER = "tuneops-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def step_of(path: Path | str) -> int | None:
    match = _STEP.match(Path(str(path).rstrip("/")).name)
    return int(match.group(1)) if match else None


def mark_complete(checkpoint: Path, step: int) -> None:
    atomic_write_json(checkpoint / MARKER, {"step": step})


def is_valid(checkpoint: Path) -> bool:
    return (
        checkpoint.is_dir()
        and (checkpoint / MARKER).is_file()
        and (checkpoint / "trainer_state.json").is_file()
    )


def local_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=lambda p: step_of(p) or 0)


def newest_valid(root: Path, *, prune_invalid: bool = False) -> Path | None:
    """The newest checkpoint with its marker; optionally delete the half-written ones."""
    best = None
    for checkpoint in local_checkpoints(root):
        if is_valid(checkpoint):
            best = checkpoint
        elif prune_invalid:
            log.warning("removing incomplete checkpoint %s", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)
    return best


def upload(checkpoint: Path, uri: str, retry: S3Retry | None = None) -> str:
    """Copy ``checkpoint`` to ``<uri>/<checkpoint name>/``, the marker last; returns the URI.

    Each file is tried again per ``retry`` when S3 refuses, drops or times out; after the last
    try ``S3Unavailable`` says so in one line (the local checkpoint is untouched)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    retry = retry or S3Retry()
    bucket, prefix = split_uri(uri, what="checkpoint location")
    key_root = f"{prefix}/{checkpoint.name}".strip("/")
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != MARKER)
    pairs = [(f, f"{key_root}/{f.relative_to(checkpoint)}") for f in [*files, checkpoint / MARKER]]
    try:
        upload_files(s3_client(retry), pairs, bucket, retry, what=f"copy of {checkpoint.name}")
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise UserError(
            f"cannot upload checkpoint to s3://{bucket}/{key_root}: {describe(exc)}"
        ) from exc
    return f"s3://{bucket}/{key_root}"


def newest_valid_remote(uri: str, retry: S3Retry | None = None) -> str | None:
    """The newest ``checkpoint-<step>`` prefix under ``uri`` whose marker was uploaded."""
    from botocore.exceptions import BotoCoreError, ClientError

    retry = retry or S3Retry()
    bucket, prefix = split_uri(uri, what="checkpoint location")

    def list_steps() -> list[int]:
        steps = []
        pages = (
            s3_client(retry)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
        )
        for page in pages:
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(prefix) :].strip("/").split("/")
                if len(parts) == 2 and parts[1] == MARKER and step_of(parts[0]) is not None:
                    steps.append(step_of(parts[0]) or 0)
        return steps

    try:
        steps = call(list_steps, retry, what=f"listing checkpoints at {uri}")
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"cannot list checkpoints at {uri}: {describe(exc)}") from exc
    if not steps:
        return None
    name = f"checkpoint-{max(steps)}"
    return f"s3://{bucket}/{prefix}/{name}" if prefix else f"s3://{bucket}/{name}"


def download(remote: str, root: Path, retry: S3Retry | None = None) -> Path:
    """Fetch one checkpoint prefix into ``root/<name>`` atomically; returns the local path.
    A transient failure starts the whole prefix again (into a fresh temporary folder)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    retry = retry or S3Retry()
    bucket, prefix = split_uri(remote, what="checkpoint location")
    target = root / Path(prefix).name

    def fetch() -> None:
        with atomic_dir(target) as tmp:
            download_prefix(s3_client(retry), bucket, prefix, tmp)

    try:
        call(fetch, retry, what=f"download of {remote}")
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise UserError(f"cannot download checkpoint {remote}: {describe(exc)}") from exc
    if not is_valid(target):
        raise UserError(f"checkpoint {remote} is incomplete")
    return target


def find_resume_point(
    local_root: Path, remote_uri: str | None, retry: S3Retry | None = None
) -> Path | None:
    """The newest valid checkpoint, local or (if newer) from S3, as a local directory."""
    local = newest_valid(local_root, prune_invalid=True)
    if remote_uri:
        remote = newest_valid_remote(remote_uri, retry)
        if remote and (local is None or (step_of(remote) or 0) > (step_of(local) or 0)):
            log.info("resuming from %s", remote)
            return download(remote, local_root, retry)
    return local
