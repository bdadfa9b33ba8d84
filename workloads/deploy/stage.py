"""Stage a dataset snapshot from S3 into the pod, then hand over to the training command.

The first program of every training pod:

    python -m workloads.deploy.stage --from s3://bucket/prefix --dataset cloudops[/<id>] \
        -- torchrun --no-python tuneops train ...

It copies ``<from>/<name>/<id>/`` (the layout ``tuneops data build --upload`` writes) into
``<cache>/datasets/<name>/<id>/`` with boto3, marks it LATEST, and replaces itself (exec) with
the command after ``--``, adding ``--set dataset=<name>/<id>`` so training reads the staged copy.
Without an id it takes the snapshot whose manifest was uploaded last.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir, atomic_write_text
from tuneops.core.paths import cache_dir
from tuneops.core.s3 import download_prefix, safe_target, split_uri

MANIFEST = "manifest.json"


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def newest_snapshot(client, bucket: str, prefix: str, name: str) -> str:
    """The id of the snapshot of ``name`` whose manifest is the most recent upload."""
    base = _join(prefix, name) + "/"
    newest: tuple[object, str] | None = None
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base) :]
            parts = rel.split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                candidate = (obj["LastModified"], parts[0])
                if newest is None or candidate > newest:
                    newest = candidate
    if newest is None:
        raise UserError(f"no snapshot of {name!r} under s3://{bucket}/{base}")
    return newest[1]


def stage(source: str, dataset: str, root: Path | None = None, client=None) -> str:
    """Copy the snapshot into ``root`` (default ``<cache>/datasets``); return ``<name>/<id>``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = split_uri(source, what="the dataset location")
    name, _, sid = dataset.strip("/").partition("/")
    if not name or "/" in sid:
        raise UserError(f"dataset {dataset!r}: give <name> or <name>/<id>")
    client = client or boto3.client("s3")
    root = root or cache_dir() / "datasets"
    try:
        sid = sid or newest_snapshot(client, bucket, prefix, name)
        target = safe_target(root, f"{name}/{sid}", f"dataset {name}/{sid}")
        if not (target / MANIFEST).is_file():
            key_prefix = _join(prefix, name, sid) + "/"
            with atomic_dir(target) as tmp:
                count = download_prefix(client, bucket, key_prefix, tmp)
                if not (tmp / MANIFEST).is_file():
                    raise UserError(f"s3://{bucket}/{key_prefix} holds no snapshot ({count} files)")
    except (BotoCoreError, ClientError) as exc:
        raise UserError(f"cannot stage {dataset} from {source}: {exc}") from exc
    atomic_write_text(root / name / "LATEST", sid + "\n")
    return f"{name}/{sid}"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: stage --from S3_URI --dataset NAME[/ID] -- COMMAND ...")
    split = argv.index("--")
    own, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="workloads.deploy.stage")
    parser.add_argument("--from", dest="source", required=True)
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args(own)
    if not command:
        raise SystemExit("stage: no command after --")
    try:
        ref = stage(args.source, args.dataset)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from exc
    print(f"staged dataset {ref} from {args.source}", flush=True)
    final = [*command, "--set", f"dataset={ref}"]
    os.execvp(final[0], final)


if __name__ == "__main__":
    main()
