"""S3: ``EncryptedBucket``, a bucket with SSE-KMS, versioning, public access block, a TLS-only
policy, lifecycle rules and access logging."""

from __future__ import annotations

from typing import Any

from cdktf_cdktf_provider_aws import s3_bucket_lifecycle_configuration as lc
from cdktf_cdktf_provider_aws import s3_bucket_server_side_encryption_configuration as sse
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import S3BucketOwnershipControls
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA
from constructs import Construct

from infra.components.iam import policy_json


class EncryptedBucket(Construct):
    """An S3 bucket with every guard on, logging its access to ``log_bucket``.

    The bucket that receives the access logs (``receives_logs``) does not log into itself.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        bucket_name: str,
        kms_key_arn: str | None,
        log_bucket: EncryptedBucket | None,
        account_id: str,
        receives_logs: bool = False,
        noncurrent_days: int,
        transition_days: int | None,
        expire_days: int | None = None,
        force_destroy: bool = False,
        require_tls: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        self.bucket = S3Bucket(self, "bucket", bucket=bucket_name, force_destroy=force_destroy)
        self._guards()
        self._encryption(kms_key_arn)
        self.policy = self._policy(account_id, require_tls=require_tls, receives_logs=receives_logs)
        self._lifecycle(noncurrent_days, transition_days, expire_days)
        if log_bucket is not None:
            S3BucketLoggingA(
                self,
                "access-logging",
                bucket=self.bucket.id,
                target_bucket=log_bucket.bucket.id,
                target_prefix=f"s3/{bucket_name}/",
                depends_on=[log_bucket.policy] if log_bucket.policy else None,
            )

    def _guards(self) -> None:
        """Owner-enforced objects, no public access, versioning."""
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
        )
        S3BucketPublicAccessBlock(
            self,
            "public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketVersioningA(
            self,
            "versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
        )

    def _encryption(self, kms_key_arn: str | None) -> None:
        # S3 server access logs can only be delivered to a bucket encrypted with SSE-S3, so the
        # log bucket itself uses AES256; every data bucket uses the environment's KMS key.
        default = (
            sse.S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                sse_algorithm="aws:kms" if kms_key_arn else "AES256",
                kms_master_key_id=kms_key_arn,
            )
        )
        sse.S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=self.bucket.id,
            rule=[
                sse.S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=default,
                    bucket_key_enabled=bool(kms_key_arn),
                )
            ],
        )

    def _policy(
        self, account_id: str, *, require_tls: bool, receives_logs: bool
    ) -> S3BucketPolicy | None:
        """The bucket policy: TLS only, and S3's log delivery for the access-log bucket."""
        statements: list[dict[str, Any]] = []
        if require_tls:
            statements.append(
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [self.bucket.arn, f"{self.bucket.arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            )
        if receives_logs:
            # S3 server access logging delivers as this service principal.
            statements.append(
                {
                    "Sid": "S3ServerAccessLogsDelivery",
                    "Effect": "Allow",
                    "Principal": {"Service": "logging.s3.amazonaws.com"},
                    "Action": ["s3:PutObject"],
                    "Resource": f"{self.bucket.arn}/*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            )
        if not statements:
            return None
        return S3BucketPolicy(self, "policy", bucket=self.bucket.id, policy=policy_json(statements))

    def _lifecycle(
        self, noncurrent_days: int, transition_days: int | None, expire_days: int | None
    ) -> None:
        rule = lc.S3BucketLifecycleConfigurationRule(
            id="retention",
            status="Enabled",
            filter=[lc.S3BucketLifecycleConfigurationRuleFilter(prefix="")],
            abort_incomplete_multipart_upload=[
                lc.S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                    days_after_initiation=7
                )
            ],
            noncurrent_version_expiration=[
                lc.S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=noncurrent_days
                )
            ],
            transition=[
                lc.S3BucketLifecycleConfigurationRuleTransition(
                    days=transition_days, storage_class="STANDARD_IA"
                )
            ]
            if transition_days
            else None,
            expiration=[lc.S3BucketLifecycleConfigurationRuleExpiration(days=expire_days)]
            if expire_days
            else None,
        )
        lc.S3BucketLifecycleConfiguration(self, "lifecycle", bucket=self.bucket.id, rule=[rule])
