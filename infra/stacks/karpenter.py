"""Karpenter's AWS side, as its getting-started template at the pinned release builds it: the
node role its nodes run as (joined to the cluster by an EKS access entry), the controller's role
(EKS Pod Identity) with its six policies, and the interruption queue that EventBridge feeds with
spot interruptions, rebalance recommendations, instance state changes, scheduled health events
and capacity-reservation interruptions. The NodePools themselves are rendered from the same
environment config by ``infra.node_pools`` and installed by the platform stack."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.cloudwatch_event_rule import CloudwatchEventRule
from cdktf_cdktf_provider_aws.cloudwatch_event_target import CloudwatchEventTarget
from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from cdktf_cdktf_provider_aws.sqs_queue_policy import SqsQueuePolicy
from constructs import Construct

from infra.components.iam import policy_json
from infra.components.pod_identity import PodIdentityRole
from infra.config import Environment
from infra.node_pools import node_role_name
from infra.stacks.karpenter_iam import (
    INTERRUPTION_EVENTS,
    Scope,
    controller_policies,
    queue_policy,
)

# The upstream template's node role policies (AWS managed).
NODE_POLICIES = (
    "AmazonEKS_CNI_Policy",
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryPullOnly",
    "AmazonSSMManagedInstanceCore",
)


def queue_name(env: Environment) -> str:
    return f"{env.cluster.name}-karpenter"


class Karpenter(Construct):
    def __init__(self, scope: Construct, id_: str, env: Environment, *, cluster_name: str) -> None:
        super().__init__(scope, id_)
        self.env = env
        self.node_role = self._node_role(cluster_name)
        self.queue = SqsQueue(
            self,
            "interruption-queue",
            name=queue_name(env),
            message_retention_seconds=env.cluster.karpenter.queue_retention_s,
            sqs_managed_sse_enabled=True,
        )
        queue_arn = f"arn:aws:sqs:{env.region}:{env.account_id}:{queue_name(env)}"
        SqsQueuePolicy(
            self,
            "queue-policy",
            queue_url=self.queue.url,
            policy=json.dumps(queue_policy(queue_arn)),
        )
        self.rules = self._interruption_rules()
        cfg = env.cluster.karpenter
        self.controller = PodIdentityRole(
            self,
            "controller",
            env,
            role_name=f"{env.cluster.name}-karpenter",
            cluster_name=cluster_name,
            namespace=cfg.namespace,
            service_account=cfg.service_account,
            documents=controller_policies(
                Scope(
                    partition="aws",
                    region=env.region,
                    account=env.account_id,
                    cluster=env.cluster.name,
                    node_role_arn=f"arn:aws:iam::{env.account_id}:role/{node_role_name(env)}",
                    queue_arn=queue_arn,
                )
            ),
        )

    def _node_role(self, cluster_name: str) -> IamRole:
        """The role of Karpenter's nodes, and the access entry that lets them join."""
        role = IamRole(
            self,
            "node-role",
            name=node_role_name(self.env),
            assume_role_policy=policy_json(
                [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ]
            ),
        )
        for policy in NODE_POLICIES:
            IamRolePolicyAttachment(
                self,
                f"node-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
            )
        if self.env.cluster.access_entries:
            EksAccessEntry(
                self,
                "node-access",
                cluster_name=cluster_name,
                principal_arn=role.arn,
                type="EC2_LINUX",
            )
        return role

    def _interruption_rules(self) -> dict[str, CloudwatchEventRule]:
        """One EventBridge rule per event Karpenter handles, each targeting the queue."""
        rules = {}
        for key, (source, detail_type) in INTERRUPTION_EVENTS.items():
            rule = CloudwatchEventRule(
                self,
                f"rule-{key}",
                name=f"{queue_name(self.env)}-{key}",
                description=f"Karpenter interruption handling: {detail_type}",
                event_pattern=json.dumps({"source": [source], "detail-type": [detail_type]}),
            )
            CloudwatchEventTarget(
                self,
                f"target-{key}",
                rule=rule.name,
                target_id="KarpenterInterruptionQueueTarget",
                arn=self.queue.arn,
            )
            rules[key] = rule
        return rules
