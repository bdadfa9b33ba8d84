"""The state bucket of an environment: created once, before any stack, with boto3.

Idempotent: an existing bucket is brought to the same settings (versioning, KMS encryption,
public access block, TLS-only policy) and nothing else is touched. Works against real AWS and
against moto's server alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from infra.config import Environment
from infra.terraform import LOCAL_CREDENTIALS
from tuneops.core.errors import MissingToolError, UserError


@dataclass
class BootstrapResult:
    bucket: str
    created: bool
    kms_key_arn: str
    actions: list[str] = field(default_factory=list)


def _session(env: Environment):
    import boto3

    if env.is_local:
        return boto3.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=env.region,
        )
    session = boto3.Session(region_name=env.region)
    if session.get_credentials() is None:
        raise MissingToolError(
            f"no AWS credentials for {env.name}: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY) for account {env.account_id} and retry"
        )
    return session


def clients(env: Environment):
    session = _session(env)
    kwargs = {"endpoint_url": env.local_endpoint} if env.is_local else {}
    return session.client("s3", **kwargs), session.client("kms", **kwargs)


def bootstrap_state_bucket(env: Environment) -> BootstrapResult:
    """Create (or bring back to its settings) the state bucket of ``env`` and its KMS key."""
    s3, kms = clients(env)
    actions: list[str] = []
    key_arn = _state_key(kms, env, actions)
    created = _ensure_bucket(s3, env, actions)
    _secure_bucket(s3, env, key_arn)
    return BootstrapResult(
        bucket=env.state.bucket, created=created, kms_key_arn=key_arn, actions=actions
    )


def _state_key(kms, env: Environment, actions: list[str]) -> str:
    """The ARN of the state's KMS key (``alias/<bucket>``), created with rotation if missing."""
    from botocore.exceptions import EndpointConnectionError

    alias = f"alias/{env.state.bucket}"
    try:
        aliases = kms.list_aliases()["Aliases"]
    except EndpointConnectionError as exc:
        raise UserError(
            f"cannot reach AWS for {env.name} at {env.local_endpoint or 'the AWS endpoint'}"
            + ("; start the local AWS with `tuneops local up`" if env.is_local else "")
        ) from exc
    match = next((a for a in aliases if a["AliasName"] == alias), None)
    if match:
        key_id = match["TargetKeyId"]
    else:
        key_id = kms.create_key(
            Description=f"Terraform state of {env.name}",
            Tags=[{"TagKey": k, "TagValue": v} for k, v in env.tags.items()],
        )["KeyMetadata"]["KeyId"]
        kms.enable_key_rotation(KeyId=key_id)
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        actions.append(f"created KMS key {alias}")
    return kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]


def _ensure_bucket(s3, env: Environment, actions: list[str]) -> bool:
    """Create the state bucket unless it exists; whether it was created."""
    from botocore.exceptions import ClientError

    bucket = env.state.bucket
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied"):
            raise UserError(f"state bucket {bucket} exists but belongs to someone else") from exc
        params = {"Bucket": bucket}
        if env.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": env.region}
        s3.create_bucket(**params)
        actions.append(f"created bucket {bucket}")
        return True
    return False


def _secure_bucket(s3, env: Environment, key_arn: str) -> None:
    """Versioning, SSE-KMS with ``key_arn``, no public access, TLS only, the environment's tags."""
    bucket = env.state.bucket
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    if env.storage.require_tls:
        _tls_only(s3, bucket)
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in env.tags.items()]}
    )


def _tls_only(s3, bucket: str) -> None:
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            }
        ),
    )
