"""IAM: policy documents as JSON, and ``ServiceAccountRole``, an IAM role that exactly one
Kubernetes service account can assume through the cluster's OIDC provider (IRSA)."""

from __future__ import annotations

import json
from typing import Any

from cdktf_cdktf_provider_aws import data_aws_iam_policy_document as doc
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct


def policy_json(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


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
        self.trust = self._trust(oidc_provider_arn, oidc_issuer)
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

    def _trust(self, oidc_provider_arn: str, oidc_issuer: str) -> doc.DataAwsIamPolicyDocument:
        """Web-identity trust held to this service account (``sub``) and to STS (``aud``)."""
        return doc.DataAwsIamPolicyDocument(
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
