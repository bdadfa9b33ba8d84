"""Cluster: EKS with KMS envelope encryption of secrets, control-plane logs, managed add-ons,
an OIDC provider for IRSA, EKS access entries, the system node group that runs the controllers,
and Karpenter's AWS side (every other node, GPU ones included, comes from Karpenter)."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster,
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
)
from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from infra.components.iam import policy_json
from infra.components.kms import customer_key
from infra.components.node_pool import ManagedNodePool
from infra.config import ClusterConfig, Environment
from infra.node_pools import node_role_name
from infra.stacks.addons import Addons, address
from infra.stacks.base import EnvStack
from infra.stacks.karpenter import Karpenter, queue_name

# AWS managed policies the control plane and the nodes need (named, never wildcards).
CLUSTER_POLICIES = ["AmazonEKSClusterPolicy", "AmazonEKSVPCResourceController"]
NODE_POLICIES = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
]
# The system pool runs only what tolerates this taint: Karpenter, CoreDNS and the controllers
# whose values in platform/catalog.yaml say so.
SYSTEM_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}


def _service_role(scope: Construct, id_: str, name: str, service: str) -> IamRole:
    return IamRole(
        scope,
        id_,
        name=name,
        assume_role_policy=policy_json(
            [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
        ),
    )


class Cluster(Construct):
    def __init__(
        self,
        scope: Construct,
        id_: str,
        env: Environment,
        *,
        private_subnet_ids: list[str],
    ) -> None:
        super().__init__(scope, id_)
        cfg = env.cluster
        self.secrets_key = customer_key(
            self,
            "secrets-key",
            env,
            description=f"{cfg.name} Kubernetes secrets envelope encryption",
            # The control-plane log group is encrypted with this key too.
            services=[f"logs.{env.region}.amazonaws.com"],
            alias=f"alias/{cfg.name}-secrets",
        )
        self.cluster = self._control_plane(cfg, private_subnet_ids)
        issuer_url = self.cluster.identity.get(0).oidc.get(0).issuer
        self.oidc = IamOpenidConnectProvider(
            self,
            "oidc",
            url=issuer_url,
            client_id_list=["sts.amazonaws.com"],
        )
        # The issuer without its scheme: the prefix of the `sub`/`aud` condition keys.
        self.oidc_issuer = Fn.replace(issuer_url, "https://", "")
        self.addons = Addons(self, "addons", env, cluster_name=self.cluster.name)
        self.node_role = self._role_with_policies(
            "node", f"{cfg.name}-node", "ec2.amazonaws.com", NODE_POLICIES
        )
        self.system_pool = ManagedNodePool(
            self,
            "pool-system",
            cluster_name=self.cluster.name,
            pool_name="system",
            pool=cfg.system_pool,
            node_role_arn=self.node_role.arn,
            subnet_ids=private_subnet_ids,
            tags=env.tags,
            taints=[dict(SYSTEM_TAINT)],
            moto=env.is_local,
        )
        node_group = self.system_pool.node_group
        if self.addons.before_nodes:
            node_group.add_override("depends_on", [address(a) for a in self.addons.before_nodes])
        self.addons.after_nodes(node_group)
        self.karpenter = Karpenter(self, "karpenter", env, cluster_name=self.cluster.name)

    def _role_with_policies(
        self, kind: str, name: str, service: str, policies: list[str]
    ) -> IamRole:
        """``<kind>-role``, assumed by ``service``, with the AWS managed ``policies`` attached."""
        role = _service_role(self, f"{kind}-role", name, service)
        for policy in policies:
            IamRolePolicyAttachment(
                self,
                f"{kind}-{policy}",
                role=role.name,
                policy_arn=f"arn:aws:iam::aws:policy/{policy}",
            )
        return role

    def _control_plane(self, cfg: ClusterConfig, private_subnet_ids: list[str]) -> EksCluster:
        """The EKS cluster: its role, its log group, secrets encrypted with the secrets key."""
        cluster_role = self._role_with_policies(
            "cluster", f"{cfg.name}-cluster", "eks.amazonaws.com", CLUSTER_POLICIES
        )
        # Created before the cluster so its retention and encryption are ours, not the default.
        log_group = CloudwatchLogGroup(
            self,
            "control-plane-logs",
            name=f"/aws/eks/{cfg.name}/cluster",
            retention_in_days=cfg.log_retention_days,
            kms_key_id=self.secrets_key.arn,
        )
        return EksCluster(
            self,
            "cluster",
            name=cfg.name,
            version=cfg.version,
            role_arn=cluster_role.arn,
            enabled_cluster_log_types=cfg.log_types,
            vpc_config={
                "subnet_ids": private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": cfg.endpoint_public_access,
                "public_access_cidrs": cfg.public_access_cidrs or None,
            },
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"],
                provider=EksClusterEncryptionConfigProvider(key_arn=self.secrets_key.arn),
            ),
            # Access entries, not the aws-auth ConfigMap: how Karpenter's nodes join.
            access_config=EksClusterAccessConfig(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            )
            if cfg.access_entries
            else None,
            depends_on=[log_group],
        )


class ClusterStack(EnvStack):
    stack_kind = "cluster"

    def __init__(self, scope: Construct, env: Environment) -> None:
        super().__init__(scope, env)
        network = self.upstream("network")
        cluster = Cluster(
            self, "eks", env, private_subnet_ids=network.get_list("private_subnet_ids")
        )
        self.cluster = cluster
        self.output("cluster_name", cluster.cluster.name, "EKS cluster name")
        self.output("cluster_endpoint", cluster.cluster.endpoint, "Kubernetes API endpoint")
        self.output(
            "cluster_ca",
            cluster.cluster.certificate_authority.get(0).data,
            "cluster CA bundle (base64)",
        )
        self.output("oidc_provider_arn", cluster.oidc.arn, "IAM OIDC provider for IRSA")
        self.output("oidc_issuer", cluster.oidc_issuer, "OIDC issuer host and path")
        self.output("node_role_arn", cluster.node_role.arn, "node IAM role of the system pool")
        self.output("region", env.region, "AWS region of the cluster")
        karpenter, addons = cluster.karpenter, cluster.addons
        self.output(
            "karpenter_interruption_queue",
            karpenter.queue.name,
            f"SQS queue Karpenter reads interruptions from ({queue_name(env)})",
        )
        self.output(
            "karpenter_node_role",
            karpenter.node_role.name,
            f"IAM role of Karpenter's nodes ({node_role_name(env)})",
        )
        self.output(
            "karpenter_role_arn", karpenter.controller.role.arn, "Karpenter controller role"
        )
        self.output(
            "load_balancer_controller_role_arn",
            addons.load_balancer_controller.role.arn,
            "AWS Load Balancer Controller role",
        )
        for name, role in addons.roles.items():
            self.output(f"{name.replace('-', '_')}_role_arn", role.role.arn, f"role of {name}")
        self.output(
            "cluster_security_group_id",
            cluster.cluster.vpc_config.cluster_security_group_id,
            "security group EKS created for the cluster",
        )
