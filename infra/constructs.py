"""Reusable constructs: the building blocks every stack and environment shares.

- ``TagsAspect``: environment, owner and cost-centre tags on every taggable resource.
- ``EncryptedBucket``: an S3 bucket with SSE-KMS, versioning, public access block, a TLS-only
  policy, lifecycle rules and access logging.
- ``ManagedNodePool``: an EKS managed node group behind a launch template with IMDSv2 and
  encrypted volumes; GPU pools are labelled, tainted and tagged for the cluster autoscaler.
- ``ServiceAccountRole``: an IAM role that exactly one Kubernetes service account can assume
  through the cluster's OIDC provider (IRSA).
- ``customer_key``: a customer-managed KMS key of the environment, optionally with an alias.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from cdktf import IAspect, TerraformResource, Token
from cdktf_cdktf_provider_aws import (
    data_aws_iam_policy_document,
    launch_template,
    s3_bucket_lifecycle_configuration,
    s3_bucket_server_side_encryption_configuration,
)
from cdktf_cdktf_provider_aws.eks_node_group import EksNodeGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_logging import S3BucketLoggingA
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import S3BucketOwnershipControls
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA
from constructs import Construct

from infra.config import Environment, GpuPool, NodePool

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABELS = {"nvidia.com/gpu.present": "true", "tuneops.io/accelerator": "nvidia"}


@jsii.implements(IAspect)
class TagsAspect:
    """Merge the environment's tags into every resource that takes tags (resource tags win)."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def visit(self, node) -> None:
        if isinstance(node, TerraformResource) and hasattr(node, "tags_input"):
            current = node.tags_input or {}
            node.tags = {**self.tags, **current}


def policy_json(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def key_policy(account_id: str, services: list[str]) -> str:
    """A KMS key policy: the account administers the key; the named AWS services may use it."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if services:
        statements.append(
            {
                "Sid": "ServicesUse",
                "Effect": "Allow",
                "Principal": {"Service": services},
                "Action": [
                    "kms:Encrypt",
                    "kms:Decrypt",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:DescribeKey",
                ],
                "Resource": "*",
            }
        )
    return policy_json(statements)


def customer_key(
    scope: Construct,
    id_: str,
    env: Environment,
    *,
    description: str,
    services: list[str],
    alias: str | None = None,
) -> KmsKey:
    """A customer-managed key with rotation on and a longer deletion window in prod, that the
    account administers and ``services`` may use; ``alias`` also names it (``<id_>-alias``)."""
    key = KmsKey(
        scope,
        id_,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30 if env.is_prod else 7,
        policy=key_policy(env.account_id, services),
    )
    if alias is not None:
        KmsAlias(scope, f"{id_}-alias", name=alias, target_key_id=key.key_id)
    return key


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
        # S3 server access logs can only be delivered to a bucket encrypted with SSE-S3, so the
        # log bucket itself uses AES256; every data bucket uses the environment's KMS key.
        sse = s3_bucket_server_side_encryption_configuration
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
        self.policy = (
            S3BucketPolicy(self, "policy", bucket=self.bucket.id, policy=policy_json(statements))
            if statements
            else None
        )
        lc = s3_bucket_lifecycle_configuration
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
        if log_bucket is not None:
            S3BucketLoggingA(
                self,
                "access-logging",
                bucket=self.bucket.id,
                target_bucket=log_bucket.bucket.id,
                target_prefix=f"s3/{bucket_name}/",
                depends_on=[log_bucket.policy] if log_bucket.policy else None,
            )


class ManagedNodePool(Construct):
    """A managed node group through a launch template (IMDSv2, encrypted root volume)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        cluster_name: str,
        pool_name: str,
        pool: NodePool,
        node_role_arn: str,
        subnet_ids: list[str],
        tags: dict[str, str],
        moto: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        gpu = isinstance(pool, GpuPool)
        # moto reports attributes differently from AWS (a default SSH key on every node group,
        # no update_config, the launch template's own tags inside its data); against moto
        # those are ignored so a second plan is empty. Real environments ignore nothing.
        lt_ignore = ["tag_specifications"] if moto else []
        ng_ignore = ["remote_access", "update_config"] if moto else []
        labels = {"tuneops.io/pool": pool_name}
        node_tags: dict[str, str] = {"Name": f"{cluster_name}-{pool_name}"}
        taints: list[dict[str, str]] = []
        if gpu:
            labels.update(GPU_LABELS)
            taints.append(dict(GPU_TAINT))
            # What the cluster autoscaler reads to scale a pool up from zero nodes: the
            # labels, taints and GPUs a node of this group would have.
            node_tags.update(
                {f"k8s.io/cluster-autoscaler/node-template/label/{k}": v for k, v in labels.items()}
            )
            node_tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] = (
                "true:NoSchedule"
            )
            node_tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] = str(
                pool.gpus_per_node
            )
        autoscaler_tags = {
            "k8s.io/cluster-autoscaler/enabled": "true",
            f"k8s.io/cluster-autoscaler/{cluster_name}": "owned",
        }
        self.autoscaler_tags = {**autoscaler_tags, **node_tags}
        instance_tags = {**tags, **node_tags}
        self.launch_template = launch_template.LaunchTemplate(
            self,
            "launch-template",
            name=f"{cluster_name}-{pool_name}",
            update_default_version=True,
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            block_device_mappings=[
                launch_template.LaunchTemplateBlockDeviceMappings(
                    device_name="/dev/xvda",
                    ebs=launch_template.LaunchTemplateBlockDeviceMappingsEbs(
                        volume_size=pool.disk_gb,
                        volume_type="gp3",
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            monitoring={"enabled": True},
            lifecycle={"ignore_changes": lt_ignore} if lt_ignore else None,
            tag_specifications=[
                launch_template.LaunchTemplateTagSpecifications(
                    resource_type=kind, tags=instance_tags
                )
                for kind in ("instance", "volume")
            ],
        )
        self.node_group = EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=pool_name,
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            instance_types=pool.instance_types,
            capacity_type=pool.capacity_type,
            ami_type="AL2_x86_64_GPU" if gpu else "AL2_x86_64",
            scaling_config={
                "min_size": pool.min_size,
                "max_size": pool.max_size,
                "desired_size": pool.desired_size,
            },
            update_config={"max_unavailable": 1},
            launch_template={
                "id": self.launch_template.id,
                "version": Token.as_string(self.launch_template.latest_version),
            },
            labels=labels,
            taint=taints or None,
            tags=self.autoscaler_tags,
            # The autoscaler owns desired_size once the pool exists.
            lifecycle={"ignore_changes": ["scaling_config[0].desired_size", *ng_ignore]},
        )


class ServiceAccountRole(Construct):
    """An IAM role only ``system:serviceaccount:<namespace>:<name>`` can assume (IRSA)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        role_name: str,
        oidc_provider_arn: str,
        oidc_issuer: str,
        namespace: str,
        service_account: str,
        statements: list[dict[str, Any]],
    ) -> None:
        super().__init__(scope, id_)
        self.subject = f"system:serviceaccount:{namespace}:{service_account}"
        doc = data_aws_iam_policy_document
        self.trust = doc.DataAwsIamPolicyDocument(
            self,
            "trust",
            statement=[
                doc.DataAwsIamPolicyDocumentStatement(
                    effect="Allow",
                    actions=["sts:AssumeRoleWithWebIdentity"],
                    principals=[
                        doc.DataAwsIamPolicyDocumentStatementPrincipals(
                            type="Federated", identifiers=[oidc_provider_arn]
                        )
                    ],
                    condition=[
                        doc.DataAwsIamPolicyDocumentStatementCondition(
                            test="StringEquals",
                            variable=f"{oidc_issuer}:sub",
                            values=[self.subject],
                        ),
                        doc.DataAwsIamPolicyDocumentStatementCondition(
                            test="StringEquals",
                            variable=f"{oidc_issuer}:aud",
                            values=["sts.amazonaws.com"],
                        ),
                    ],
                )
            ],
        )
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            assume_role_policy=self.trust.json,
            max_session_duration=3600,
        )
        self.permissions = doc.DataAwsIamPolicyDocument(
            self,
            "permissions",
            statement=[doc.DataAwsIamPolicyDocumentStatement(**st) for st in statements],
        )
        IamRolePolicy(
            self,
            "policy",
            name=f"{role_name}-access",
            role=self.role.id,
            policy=self.permissions.json,
        )
