"""``PodIdentityRole``: the IAM role of one Kubernetes service account through EKS Pod Identity
(the role trusts ``pods.eks.amazonaws.com`` of this account and cluster only; an association
binds it to ``<namespace>/<service account>``), with AWS managed and customer-managed
policies."""

from __future__ import annotations

import json
from typing import Any

from cdktf_cdktf_provider_aws.eks_pod_identity_association import EksPodIdentityAssociation
from cdktf_cdktf_provider_aws.iam_policy import IamPolicy
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from infra.components.iam import policy_json
from infra.config import Environment


def cluster_arn(env: Environment) -> str:
    return f"arn:aws:eks:{env.region}:{env.account_id}:cluster/{env.cluster.name}"


def pod_identity_trust(env: Environment) -> str:
    """EKS Pod Identity may assume the role (and tag the session) for this cluster only."""
    return policy_json(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": env.account_id},
                    "ArnEquals": {"aws:SourceArn": cluster_arn(env)},
                },
            }
        ]
    )


class PodIdentityRole(Construct):
    """A role for ``namespace/service_account`` with ``managed`` AWS policies attached and
    ``documents`` (name -> policy document) as customer-managed policies. ``associate`` creates
    the Pod Identity association on ``cluster_name`` (a reference to the cluster, so it comes
    after it; an EKS add-on brings its own association instead)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        env: Environment,
        *,
        role_name: str,
        cluster_name: str,
        namespace: str,
        service_account: str,
        managed: tuple[str, ...] = (),
        documents: dict[str, dict[str, Any]] | None = None,
        associate: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        self.namespace, self.service_account = namespace, service_account
        self.role = IamRole(
            self,
            "role",
            name=role_name,
            assume_role_policy=pod_identity_trust(env),
            max_session_duration=3600,
        )
        for policy in managed:
            IamRolePolicyAttachment(
                self,
                f"managed-{policy.rsplit('/', 1)[-1]}",
                role=self.role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
            )
        self.policies: dict[str, IamPolicy] = {}
        for name, document in (documents or {}).items():
            policy = IamPolicy(
                self,
                f"policy-{name}",
                name=f"{role_name}-{name}",
                policy=json.dumps(document),
            )
            IamRolePolicyAttachment(
                self, f"attach-{name}", role=self.role.name, policy_arn=policy.arn
            )
            self.policies[name] = policy
        self.association = None
        if associate and env.cluster.pod_identity:
            self.association = EksPodIdentityAssociation(
                self,
                "association",
                cluster_name=cluster_name,
                namespace=namespace,
                service_account=service_account,
                role_arn=self.role.arn,
            )
