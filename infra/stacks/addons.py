"""The cluster's add-ons that need AWS: the EKS managed add-ons of the config (the EBS CSI driver
with a role of its own through EKS Pod Identity) and the AWS Load Balancer Controller's role.
The controller itself, metrics-server and Karpenter's chart are Helm releases of the platform
catalog.

The load balancer controller's policy is the upstream one, vendored unchanged under
``infra/upstream/`` (kubernetes-sigs/aws-load-balancer-controller tag v3.5.0,
docs/install/iam_policy.json; the chart aws-load-balancer-controller 3.5.0 installs that
release). Upstream grants some actions on every resource with no condition; here each such
statement is held to the region its requests go to (the environment's region, or us-east-1 for
the global IAM and Shield APIs) with ``aws:RequestedRegion``, the way Karpenter's own policy
scopes its reads. Nothing else is changed."""

from __future__ import annotations

import copy
import json
from typing import Any

from cdktf import TerraformResource
from cdktf_cdktf_provider_aws.eks_addon import EksAddon, EksAddonPodIdentityAssociation
from constructs import Construct

from infra.components.pod_identity import PodIdentityRole
from infra.config import Environment
from tuneops.core.paths import REPO_ROOT

LBC_POLICY = REPO_ROOT / "infra" / "upstream" / "aws-load-balancer-controller-iam-policy.json"
LBC_POLICY_SOURCE = {
    "repository": "https://github.com/kubernetes-sigs/aws-load-balancer-controller",
    "tag": "v3.5.0",
    "path": "docs/install/iam_policy.json",
    "sha256": "16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a",
}
LBC_NAMESPACE = "kube-system"
LBC_SERVICE_ACCOUNT = "aws-load-balancer-controller"
# APIs served from us-east-1 only, whatever region the caller is in.
GLOBAL_SERVICES = ("iam", "shield")

# Add-ons the nodes need to become ready: created before the system node group.
BEFORE_NODES = ("vpc-cni", "kube-proxy", "eks-pod-identity-agent")
# Add-ons that run as a service account with an AWS role: name -> (service account, AWS
# managed policies of its role, configuration values).
ADDON_ROLES: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    # The EBS CSI driver's controller creates, attaches and deletes volumes; the add-on also
    # installs AWS's recommended default StorageClass (gp3, encrypted).
    "aws-ebs-csi-driver": (
        "ebs-csi-controller-sa",
        ("service-role/AmazonEBSCSIDriverPolicy",),
        {"defaultStorageClass": {"enabled": True}},
    ),
}


def address(resource: TerraformResource) -> str:
    """``type.name`` of a resource, as Terraform's ``depends_on`` wants it."""
    return f"{resource.terraform_resource_type}.{resource.friendly_unique_id}"


def _regional(statement: dict[str, Any], region: str) -> list[dict[str, Any]]:
    """``statement`` held to the region its requests go to when it allows actions on every
    resource with no condition; as it is otherwise. Global APIs get a statement of their own."""
    if statement.get("Resource") != "*" or "Condition" in statement:
        return [statement]
    actions = (
        statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    )
    split: dict[str, list[str]] = {}
    for action in actions:
        service = action.split(":", 1)[0]
        split.setdefault("us-east-1" if service in GLOBAL_SERVICES else region, []).append(action)
    held = []
    for where, group in split.items():
        part = copy.deepcopy(statement)
        part["Action"] = group
        part["Condition"] = {"StringEquals": {"aws:RequestedRegion": where}}
        held.append(part)
    return held


def load_balancer_controller_policy(region: str) -> dict[str, Any]:
    """The upstream policy with every unconditioned statement on ``*`` held to its region."""
    upstream = json.loads(LBC_POLICY.read_text(encoding="utf-8"))
    statements = [held for st in upstream["Statement"] for held in _regional(st, region)]
    return {**upstream, "Statement": statements}


class Addons(Construct):
    """The managed add-ons of ``env.cluster.addons`` and the load balancer controller's role.
    ``before_nodes`` are the add-ons the node group must wait for."""

    def __init__(self, scope: Construct, id_: str, env: Environment, *, cluster_name: str) -> None:
        super().__init__(scope, id_)
        self.env, self.cluster_name = env, cluster_name
        self.addons: dict[str, EksAddon] = {}
        self.roles: dict[str, PodIdentityRole] = {}
        for name in sorted(env.cluster.addons, key=lambda n: n not in BEFORE_NODES):
            addon = self._addon(name)
            if addon is not None:
                self.addons[name] = addon
        self.load_balancer_controller = PodIdentityRole(
            self,
            "load-balancer-controller",
            env,
            role_name=f"{env.cluster.name}-load-balancer-controller",
            cluster_name=cluster_name,
            namespace=LBC_NAMESPACE,
            service_account=LBC_SERVICE_ACCOUNT,
            documents={"policy": load_balancer_controller_policy(env.region)},
        )

    @property
    def before_nodes(self) -> list[EksAddon]:
        return [addon for name, addon in self.addons.items() if name in BEFORE_NODES]

    def after_nodes(self, node_group: TerraformResource) -> None:
        """Add-ons that run as pods wait for the system node group to exist."""
        for name, addon in self.addons.items():
            if name not in BEFORE_NODES:
                addon.add_override("depends_on", [address(node_group)])

    def _addon(self, name: str) -> EksAddon | None:
        """The add-on ``name`` with its role, if it has one (the role also where
        ``managed_addons`` is off: only the add-on API is missing there)."""
        extra: dict[str, Any] = {}
        if name in ADDON_ROLES:
            service_account, managed, configuration = ADDON_ROLES[name]
            role = PodIdentityRole(
                self,
                f"{name}-identity",
                self.env,
                role_name=f"{self.env.cluster.name}-{name}",
                cluster_name=self.cluster_name,
                namespace="kube-system",
                service_account=service_account,
                managed=managed,
                associate=False,
            )
            self.roles[name] = role
            extra["configuration_values"] = json.dumps(configuration, sort_keys=True)
            if self.env.cluster.pod_identity:
                extra["pod_identity_association"] = [
                    EksAddonPodIdentityAssociation(
                        role_arn=role.role.arn, service_account=service_account
                    )
                ]
        if not self.env.cluster.managed_addons:
            return None
        return EksAddon(
            self,
            f"addon-{name}",
            cluster_name=self.cluster_name,
            addon_name=name,
            addon_version=self.env.cluster.addons[name],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            **extra,
        )
