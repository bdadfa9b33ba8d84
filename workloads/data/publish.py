"""Optional outputs of a build: upload the snapshot to S3, log it to MLflow as a dataset input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.s3 import split_uri
from workloads.data.s3_retry import S3Retry, S3Unavailable, describe, s3_client, upload_files
from workloads.data.snapshot import Snapshot
from workloads.data.split import SPLITS

EXPERIMENT = "tuneops-data"


def upload_snapshot(snapshot: Snapshot, uri: str, retry: S3Retry | None = None) -> str:
    """Copy every file of the snapshot to ``<uri>/<name>/<id>/``; returns that prefix URI.

    Credentials and endpoint come from the usual AWS settings (``AWS_ENDPOINT_URL`` points
    boto3 at another S3-compatible endpoint, such as the local environment's). A refused,
    dropped or timed-out request is tried again per ``retry`` (``upload_retry`` of the data
    config); after the last try the upload stops with one line and the local snapshot stays.
    """
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    retry = retry or S3Retry()
    bucket, prefix = split_uri(uri, what="--upload")
    key_prefix = "/".join(p for p in (prefix, snapshot.name, snapshot.id) if p)
    files = [
        (path, f"{key_prefix}/{path.name}")
        for path in sorted(Path(snapshot.path).iterdir())
        if path.is_file()
    ]
    try:
        upload_files(s3_client(retry), files, bucket, retry, what="dataset upload")
    except NoCredentialsError as exc:
        raise MissingToolError(
            "no AWS credentials for the upload; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY (for the local environment: `tuneops local up`)"
        ) from exc
    except S3Unavailable as exc:
        raise S3Unavailable(f"{exc}; the snapshot is still at {snapshot.path}") from None
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
        raise UserError(f"upload to s3://{bucket}/{key_prefix} failed: {describe(exc)}") from exc
    return f"s3://{bucket}/{key_prefix}"


def log_snapshot_to_mlflow(
    snapshot: Snapshot, *, tracking_uri: str | None = None, source_uri: str | None = None
) -> str:
    """Log the snapshot as MLflow dataset inputs (one per split) in a run of its own;
    returns the run id. The training run logs the same dataset when it uses the snapshot."""
    import mlflow
    import pandas as pd

    from tuneops.core.paths import default_tracking_uri
    from tuneops.core.tracking import use_experiment

    use_experiment(EXPERIMENT, tracking_uri or default_tracking_uri())
    source = source_uri or str(snapshot.path)
    with mlflow.start_run(run_name=f"{snapshot.name}-{snapshot.id}") as run:
        for split_name in SPLITS:
            rows = snapshot.split(split_name)
            frame = pd.DataFrame(
                {
                    "id": [r["id"] for r in rows],
                    "kind": [r["kind"] for r in rows],
                    "messages": [json.dumps(r.get("messages"), ensure_ascii=False) for r in rows],
                    "text": [r.get("text") for r in rows],
                    "source": [r["source"] for r in rows],
                    "category": [r.get("category") for r in rows],
                },
                columns=["id", "kind", "messages", "text", "source", "category"],
            )
            with warnings.catch_warnings():
                # A local path matches two equivalent local source types; either is right.
                warnings.filterwarnings("ignore", message=".*interpreted in multiple ways.*")
                dataset = mlflow.data.from_pandas(
                    frame,
                    source=f"{source}/{split_name}.jsonl",
                    name=f"{snapshot.name}-{split_name}",
                    digest=snapshot.id,
                )
            mlflow.log_input(dataset, context=split_name)
        mlflow.set_tags(
            {
                "tuneops.dataset": snapshot.name,
                "tuneops.dataset_snapshot": snapshot.id,
                "tuneops.dataset_uri": source,
            }
        )
        mlflow.log_params({f"records_{k}": v for k, v in snapshot.manifest["splits"].items()})
        mlflow.log_artifact(str(Path(snapshot.path) / "manifest.json"))
        mlflow.log_artifact(str(Path(snapshot.path) / "DATACARD.md"))
        return run.info.run_id
