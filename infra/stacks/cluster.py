"""Cluster: EKS with KMS envelope encryption of secrets, control-plane logs, managed add-ons,
an OIDC provider for IRSA, a system node pool and the GPU pools of the environment."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.autoscaling_group_tag import AutoscalingGroupTagA
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.eks_addon import EksAddon
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster,
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
from infra.stacks.base import EnvStack

# AWS managed policies the control plane and the nodes need (named, never wildcards).
CLUSTER_POLICIES = ["AmazonEKSClusterPolicy", "AmazonEKSVPCResourceController"]
NODE_POLICIES = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
]


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
        for name, version in cfg.addons.items():
            EksAddon(
                self,
                f"addon-{name}",
                cluster_name=self.cluster.name,
                addon_name=name,
                addon_version=version,
                resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE",
            )
        self.node_role = self._role_with_policies(
            "node", f"{cfg.name}-node", "ec2.amazonaws.com", NODE_POLICIES
        )
        self._node_pools(env, private_subnet_ids)

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
            depends_on=[log_group],
        )

    def _node_pools(self, env: Environment, private_subnet_ids: list[str]) -> None:
        """The system pool and the GPU pools, in that order."""
        cfg = env.cluster
        self.pools: dict[str, ManagedNodePool] = {}
        for pool_name, pool in [("system", cfg.system_pool), *((p.name, p) for p in cfg.gpu_pools)]:
            node_pool = ManagedNodePool(
                self,
                f"pool-{pool_name}",
                cluster_name=self.cluster.name,
                pool_name=pool_name,
                pool=pool,
                node_role_arn=self.node_role.arn,
                subnet_ids=private_subnet_ids,
                tags=env.tags,
                moto=env.is_local,
            )
            self.pools[pool_name] = node_pool
            if cfg.propagate_asg_tags:
                _asg_tags(node_pool)


def _asg_tags(node_pool: ManagedNodePool) -> None:
    """EKS does not copy node group tags to the Auto Scaling group; the autoscaler reads them
    there, so each one is set on the group explicitly."""
    asg_name = node_pool.node_group.resources.get(0).autoscaling_groups.get(0).name
    for index, (key, value) in enumerate(sorted(node_pool.autoscaler_tags.items())):
        AutoscalingGroupTagA(
            node_pool,
            f"asg-tag-{index}",
            autoscaling_group_name=asg_name,
            tag={"key": key, "value": value, "propagate_at_launch": False},
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
        self.output("node_role_arn", cluster.node_role.arn, "node IAM role")
        self.output(
            "cluster_security_group_id",
            cluster.cluster.vpc_config.cluster_security_group_id,
            "security group EKS created for the cluster",
        )
