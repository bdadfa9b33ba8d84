"""KMS: a customer-managed key of the environment, optionally with an alias."""

from __future__ import annotations

from typing import Any

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from infra.components.iam import policy_json
from infra.config import Environment


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
