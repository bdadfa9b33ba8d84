"""IAM: least-privilege roles for the workloads, each assumable by one Kubernetes service
account only (IRSA). No statement allows a wildcard action on every resource."""

from __future__ import annotations

from typing import Any

from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocumentStatementCondition,
)
from constructs import Construct

from infra.components.iam import ServiceAccountRole
from infra.config import Environment


def _s3(actions: list[str], bucket_arns: list[str], objects: bool = True) -> dict[str, Any]:
    resources = [f"{arn}/*" for arn in bucket_arns] if objects else bucket_arns
    return {"effect": "Allow", "actions": actions, "resources": resources}


def _s3_prefix_read(bucket_arn: str, prefix: str) -> list[dict[str, Any]]:
    """Read one prefix of a bucket: list it (the s3:prefix condition keeps listing inside the
    prefix) and get its objects."""
    return [
        {
            "effect": "Allow",
            "actions": ["s3:ListBucket"],
            "resources": [bucket_arn],
            "condition": [
                DataAwsIamPolicyDocumentStatementCondition(
                    test="StringLike", variable="s3:prefix", values=[prefix, f"{prefix}/*"]
                )
            ],
        },
        {
            "effect": "Allow",
            "actions": ["s3:GetObject", "s3:GetObjectVersion"],
            "resources": [f"{bucket_arn}/{prefix}/*"],
        },
    ]


def workload_grants(
    env: Environment, buckets: dict[str, str], kms_key_arn: str, database_arn: str
) -> dict[str, list[dict[str, Any]]]:
    """The policy statements of each workload role, by the role's key in ``env.iam``."""
    datasets, artifacts, models = buckets["datasets"], buckets["artifacts"], buckets["models"]
    kms_use = {
        "effect": "Allow",
        "actions": ["kms:Decrypt", "kms:GenerateDataKey"],
        "resources": [kms_key_arn],
    }
    read = ["s3:GetObject", "s3:GetObjectVersion"]
    write = ["s3:PutObject", "s3:AbortMultipartUpload"]
    return {
        # trainer: read datasets, write artifacts and models
        "trainer": [
            _s3(["s3:ListBucket"], [datasets, artifacts, models], objects=False),
            _s3(read, [datasets]),
            _s3(read + write, [artifacts, models]),
            kms_use,
        ],
        # model server: read models, and the registered MLflow models KServe downloads
        # (the artifacts bucket's MLflow prefix only)
        "model_server": [
            _s3(["s3:ListBucket"], [models], objects=False),
            _s3(read, [models]),
            *_s3_prefix_read(artifacts, env.storage.mlflow_prefix.strip("/")),
            kms_use,
        ],
        # MLflow: read and write artifacts, connect to its database with IAM auth
        "mlflow": [
            _s3(["s3:ListBucket"], [artifacts], objects=False),
            _s3([*read, *write, "s3:DeleteObject"], [artifacts]),
            kms_use,
            {
                "effect": "Allow",
                "actions": ["rds:DescribeDBInstances"],
                "resources": [database_arn],
            },
        ],
    }


class WorkloadRoles(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        env: Environment,
        *,
        oidc_provider_arn: str,
        oidc_issuer: str,
        buckets: dict[str, str],
        kms_key_arn: str,
        database_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        grants = workload_grants(env, buckets, kms_key_arn, database_arn)
        self.roles: dict[str, ServiceAccountRole] = {}
        for key, statements in grants.items():
            account = getattr(env.iam, key)
            self.roles[key] = ServiceAccountRole(
                self,
                key.replace("_", "-"),
                role_name=f"{env.cluster.name}-{key.replace('_', '-')}",
                oidc_provider_arn=oidc_provider_arn,
                oidc_issuer=oidc_issuer,
                namespace=account.namespace,
                service_account=account.name,
                statements=statements,
            )
