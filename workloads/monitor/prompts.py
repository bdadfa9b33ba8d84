"""What drift compares: the prompts the server sampled, and the prompts it was trained on.

The sampled log (``sampling.log`` in ``configs/serve``, or ``sink.log`` in ``configs/monitor``
for the sink that samples the GPU runtime's traffic) is a JSONL file, a folder of them, or
an ``s3://bucket/prefix`` of ``*.jsonl`` objects, one ``{"ts", "route", "prompt", ...}`` record
per line. The reference is a dataset snapshot's split (or a JSONL file of records).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.io import iter_jsonl
from tuneops.core.s3 import split_uri
from workloads.data.snapshot import load_snapshot


def _s3_lines(source: str) -> list[str]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(source, what="prompt log")
    s3 = boto3.client("s3")
    lines: list[str] = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [
            obj["Key"]
            for page in pages
            for obj in page.get("Contents", [])
            if obj["Key"].endswith(".jsonl")
        ]
        for key in sorted(keys):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
            lines.extend(body.splitlines())
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"cannot read the prompt log {source}: {exc}") from exc
    return lines


def _prompt_lines(source: str) -> list[str]:
    if source.startswith("s3://"):
        return _s3_lines(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"prompt log {source} does not exist (see sampling.log in configs/serve)")
    return [line for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def load_prompts(source: str, window: int) -> list[str]:
    """The ``window`` most recent sampled prompts from a local JSONL log, folder or S3 prefix."""
    records = []
    lines = iter_jsonl(
        _prompt_lines(source),
        lambda number, exc: UserError(f"{source}: line {number} is not JSON ({exc.msg})"),
    )
    for number, record in lines:
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise UserError(f"{source}: line {number} has no string field 'prompt'")
        records.append(record)
    records.sort(key=lambda r: r.get("ts") or 0)
    return [r["prompt"] for r in records[-window:]]


def record_prompt(record: dict[str, Any]) -> str | None:
    """The user side of a dataset record: its user messages, or its text."""
    if record.get("kind") == "text" or "messages" not in record:
        text = record.get("text")
        return text if isinstance(text, str) else None
    users = [m.get("content", "") for m in record.get("messages", []) if m.get("role") == "user"]
    return "\n".join(users) if users else None


def load_reference(ref: str, split: str) -> list[str]:
    """Training prompts from a dataset snapshot reference (or a JSONL file of records)."""
    path = Path(ref).expanduser()
    if path.is_file():
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    else:
        rows = load_snapshot(ref).split(split)
    return [p for p in (record_prompt(r) for r in rows) if p]


def chat_prompt(messages: list[dict[str, str]]) -> str:
    """The text of a chat that is sampled for drift: its last user message, else its last
    message (``messages`` as ``{"role", "content"}`` with the content as plain text)."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"]
