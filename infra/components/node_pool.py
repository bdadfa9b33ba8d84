"""EKS: ``ManagedNodePool``, a managed node group behind a launch template with IMDSv2 and
encrypted volumes. Only the system pool is one: every other node comes from Karpenter."""

from __future__ import annotations

from cdktf import Token
from cdktf_cdktf_provider_aws import launch_template
from cdktf_cdktf_provider_aws.eks_node_group import EksNodeGroup
from constructs import Construct

from infra.config import NodePool

# EKS optimized Amazon Linux 2023 (EKS publishes no Amazon Linux 2 AMIs for 1.33 and later).
AMI_TYPE = "AL2023_x86_64_STANDARD"


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
        taints: list[dict[str, str]] | None = None,
        moto: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        # moto reports attributes differently from AWS (a default SSH key on every node group,
        # no update_config, the launch template's own tags inside its data); against moto
        # those are ignored so a second plan is empty. Real environments ignore nothing.
        self.moto = moto
        name = f"{cluster_name}-{pool_name}"
        self.launch_template = self._launch_template(name, pool, {**tags, "Name": name})
        self.node_group = EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=pool_name,
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            instance_types=pool.instance_types,
            capacity_type=pool.capacity_type,
            ami_type=AMI_TYPE,
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
            labels={"tuneops.io/pool": pool_name},
            taint=taints or None,
            tags={"Name": name},
            # Scaled by hand (or by EKS during updates) once the pool exists.
            lifecycle={
                "ignore_changes": [
                    "scaling_config[0].desired_size",
                    *(["remote_access", "update_config"] if moto else []),
                ]
            },
        )

    def _launch_template(
        self, name: str, pool: NodePool, instance_tags: dict[str, str]
    ) -> launch_template.LaunchTemplate:
        """IMDSv2 only (hop limit 1), an encrypted gp3 root volume, detailed monitoring."""
        lt_ignore = ["tag_specifications"] if self.moto else []
        return launch_template.LaunchTemplate(
            self,
            "launch-template",
            name=name,
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
