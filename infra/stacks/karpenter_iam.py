"""The Karpenter controller's IAM policies, statement for statement those of Karpenter's own
getting-started CloudFormation template at the pinned release (aws/karpenter-provider-aws tag
v1.14.1, website/content/en/docs/getting-started/getting-started-with-karpenter/
cloudformation.yaml): node lifecycle, IAM integration (instance profiles of the node role), EKS
integration, interruption queue, zonal shift and resource discovery. Every ARN is written out for
the environment's partition, region and account, so the documents are plain JSON the policy gate
reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KARPENTER_RELEASE = "v1.14.1"


@dataclass(frozen=True)
class Scope:
    """What the upstream template fills in with ``!Sub``."""

    partition: str
    region: str
    account: str
    cluster: str
    node_role_arn: str
    queue_arn: str

    def ec2(self, resource: str, account: bool = True) -> str:
        owner = "*" if account else ""
        return f"arn:{self.partition}:ec2:{self.region}:{owner}:{resource}"

    @property
    def cluster_arn(self) -> str:
        return f"arn:{self.partition}:eks:{self.region}:{self.account}:cluster/{self.cluster}"

    @property
    def instance_profiles(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:instance-profile/*"

    @property
    def owned(self) -> dict[str, str]:
        return {f"aws:ResourceTag/kubernetes.io/cluster/{self.cluster}": "owned"}

    @property
    def request_owned(self) -> dict[str, str]:
        return {
            f"aws:RequestTag/kubernetes.io/cluster/{self.cluster}": "owned",
            "aws:RequestTag/eks:eks-cluster-name": self.cluster,
        }


LAUNCHED = [
    "fleet/*",
    "instance/*",
    "volume/*",
    "network-interface/*",
    "launch-template/*",
    "spot-instances-request/*",
]
NODEPOOL_REQUEST = {"aws:RequestTag/karpenter.sh/nodepool": "*"}
NODEPOOL_RESOURCE = {"aws:ResourceTag/karpenter.sh/nodepool": "*"}
NODECLASS_REQUEST = {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"}
NODECLASS_RESOURCE = {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"}


def _allow(sid: str, actions: list[str], resources: Any, **condition: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": actions if len(actions) > 1 else actions[0],
        "Resource": resources,
    }
    if condition:
        statement["Condition"] = condition
    return statement


def _tagging(s: Scope, launched: list[str]) -> list[dict[str, Any]]:
    """Tag what a launch creates, and later only the Name and node claim of its instances."""
    return [
        _allow(
            "AllowScopedResourceCreationTagging",
            ["ec2:CreateTags"],
            launched,
            StringEquals={
                **s.request_owned,
                "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
            },
            StringLike=NODEPOOL_REQUEST,
        ),
        _allow(
            "AllowScopedResourceTagging",
            ["ec2:CreateTags"],
            s.ec2("instance/*"),
            StringEquals=s.owned,
            StringLike=NODEPOOL_RESOURCE,
            StringEqualsIfExists={"aws:RequestTag/eks:eks-cluster-name": s.cluster},
            **{
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                }
            },
        ),
    ]


def node_lifecycle(s: Scope) -> list[dict[str, Any]]:
    """Launch, tag and terminate the nodes of this cluster's NodePools only."""
    run = ["ec2:RunInstances", "ec2:CreateFleet"]
    launched = [s.ec2(r) for r in LAUNCHED]
    return [
        _allow(
            "AllowScopedEC2InstanceAccessActions",
            run,
            [
                s.ec2("image/*", account=False),
                s.ec2("snapshot/*", account=False),
                s.ec2("security-group/*"),
                s.ec2("subnet/*"),
                s.ec2("capacity-reservation/*"),
                s.ec2("placement-group/*"),
            ],
        ),
        _allow(
            "AllowScopedEC2LaunchTemplateAccessActions",
            run,
            s.ec2("launch-template/*"),
            StringEquals=s.owned,
            StringLike=NODEPOOL_RESOURCE,
        ),
        _allow(
            "AllowScopedEC2InstanceActionsWithTags",
            [*run, "ec2:CreateLaunchTemplate"],
            launched,
            StringEquals=s.request_owned,
            StringLike=NODEPOOL_REQUEST,
        ),
        *_tagging(s, launched),
        _allow(
            "AllowScopedDeletion",
            ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            [s.ec2("instance/*"), s.ec2("launch-template/*")],
            StringEquals=s.owned,
            StringLike=NODEPOOL_RESOURCE,
        ),
    ]


def iam_integration(s: Scope) -> list[dict[str, Any]]:
    """Pass the node role to EC2, and manage the instance profiles of this cluster's
    EC2NodeClasses."""
    region = {"aws:ResourceTag/topology.kubernetes.io/region": s.region}
    request_region = {"aws:RequestTag/topology.kubernetes.io/region": s.region}
    return [
        _allow(
            "AllowPassingInstanceRole",
            ["iam:PassRole"],
            s.node_role_arn,
            StringEquals={"iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]},
        ),
        _allow(
            "AllowScopedInstanceProfileCreationActions",
            ["iam:CreateInstanceProfile"],
            s.instance_profiles,
            StringEquals={**s.request_owned, **request_region},
            StringLike=NODECLASS_REQUEST,
        ),
        _allow(
            "AllowScopedInstanceProfileTagActions",
            ["iam:TagInstanceProfile"],
            s.instance_profiles,
            StringEquals={**s.owned, **region, **s.request_owned, **request_region},
            StringLike={**NODECLASS_RESOURCE, **NODECLASS_REQUEST},
        ),
        _allow(
            "AllowScopedInstanceProfileActions",
            [
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            s.instance_profiles,
            StringEquals={**s.owned, **region},
            StringLike=NODECLASS_RESOURCE,
        ),
    ]


def eks_integration(s: Scope) -> list[dict[str, Any]]:
    return [_allow("AllowAPIServerEndpointDiscovery", ["eks:DescribeCluster"], s.cluster_arn)]


def interruption(s: Scope) -> list[dict[str, Any]]:
    return [
        _allow(
            "AllowInterruptionQueueActions",
            ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
            s.queue_arn,
        )
    ]


def zonal_shift(s: Scope) -> list[dict[str, Any]]:
    return [
        _allow(
            "AllowZonalShiftStatusReadOnly",
            ["arc-zonal-shift:GetManagedResource"],
            "*",
            StringEquals={"arc-zonal-shift:ResourceIdentifier": s.cluster_arn},
        )
    ]


def resource_discovery(s: Scope) -> list[dict[str, Any]]:
    """Read what the scheduler needs: instance types, offerings, prices, AMIs, subnets."""
    reads = [
        "ec2:DescribeCapacityReservations",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribePlacementGroups",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeSubnets",
    ]
    return [
        _allow(
            "AllowRegionalReadActions",
            reads,
            "*",
            StringEquals={"aws:RequestedRegion": s.region},
        ),
        _allow(
            "AllowSSMReadActions",
            ["ssm:GetParameter"],
            f"arn:{s.partition}:ssm:{s.region}::parameter/aws/service/*",
        ),
        _allow("AllowPricingReadActions", ["pricing:GetProducts"], "*"),
        _allow("AllowUnscopedInstanceProfileListAction", ["iam:ListInstanceProfiles"], "*"),
        _allow("AllowInstanceProfileReadActions", ["iam:GetInstanceProfile"], s.instance_profiles),
    ]


# Upstream policy name suffix -> its statements, in the template's order.
POLICIES = {
    "NodeLifecycle": node_lifecycle,
    "IAMIntegration": iam_integration,
    "EKSIntegration": eks_integration,
    "Interruption": interruption,
    "ZonalShift": zonal_shift,
    "ResourceDiscovery": resource_discovery,
}


def controller_policies(scope: Scope) -> dict[str, dict[str, Any]]:
    """Every policy document of the controller by its upstream name suffix."""
    return {
        name: {"Version": "2012-10-17", "Statement": build(scope)}
        for name, build in POLICIES.items()
    }


# The events Karpenter handles from its queue: the template's EventBridge rules.
INTERRUPTION_EVENTS = {
    "scheduled-change": ("aws.health", "AWS Health Event"),
    "spot-interruption": ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    "rebalance": ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    "instance-state-change": ("aws.ec2", "EC2 Instance State-change Notification"),
    "capacity-reservation-interruption": (
        "aws.ec2",
        "EC2 Capacity Reservation Instance Interruption Warning",
    ),
}


def queue_policy(queue_arn: str) -> dict[str, Any]:
    """EventBridge (and SQS) may send to the queue; nothing reaches it without TLS."""
    return {
        "Version": "2012-10-17",
        "Id": "EC2InterruptionPolicy",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            {
                "Sid": "DenyHTTP",
                "Effect": "Deny",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                "Principal": "*",
            },
        ],
    }
