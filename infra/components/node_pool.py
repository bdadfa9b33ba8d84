"""EKS: ``ManagedNodePool``, a managed node group behind a launch template with IMDSv2 and
encrypted volumes; GPU pools are labelled, tainted and tagged for the cluster autoscaler."""

from __future__ import annotations

from cdktf import Token
from cdktf_cdktf_provider_aws import launch_template
from cdktf_cdktf_provider_aws.eks_node_group import EksNodeGroup
from constructs import Construct

from infra.config import GpuPool, NodePool

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}
GPU_LABELS = {"nvidia.com/gpu.present": "true", "tuneops.io/accelerator": "nvidia"}


def pool_scheduling(
    cluster_name: str, pool_name: str, pool: NodePool
) -> tuple[dict[str, str], list[dict[str, str]], dict[str, str]]:
    """The labels, taints and node tags of a pool. A GPU pool's node tags say what the cluster
    autoscaler needs to scale it up from zero nodes: the labels, taints and GPUs of a node."""
    labels = {"tuneops.io/pool": pool_name}
    node_tags: dict[str, str] = {"Name": f"{cluster_name}-{pool_name}"}
    taints: list[dict[str, str]] = []
    if isinstance(pool, GpuPool):
        labels.update(GPU_LABELS)
        taints.append(dict(GPU_TAINT))
        node_tags.update(
            {f"k8s.io/cluster-autoscaler/node-template/label/{k}": v for k, v in labels.items()}
        )
        node_tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] = (
            "true:NoSchedule"
        )
        node_tags["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"] = str(
            pool.gpus_per_node
        )
    return labels, taints, node_tags


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
        moto: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        # moto reports attributes differently from AWS (a default SSH key on every node group,
        # no update_config, the launch template's own tags inside its data); against moto
        # those are ignored so a second plan is empty. Real environments ignore nothing.
        self.moto = moto
        labels, taints, node_tags = pool_scheduling(cluster_name, pool_name, pool)
        autoscaler_tags = {
            "k8s.io/cluster-autoscaler/enabled": "true",
            f"k8s.io/cluster-autoscaler/{cluster_name}": "owned",
        }
        self.autoscaler_tags = {**autoscaler_tags, **node_tags}
        self.launch_template = self._launch_template(
            f"{cluster_name}-{pool_name}", pool, {**tags, **node_tags}
        )
        self.node_group = EksNodeGroup(
            self,
            "node-group",
            cluster_name=cluster_name,
            node_group_name=pool_name,
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            instance_types=pool.instance_types,
            capacity_type=pool.capacity_type,
            ami_type="AL2_x86_64_GPU" if isinstance(pool, GpuPool) else "AL2_x86_64",
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
            labels=labels,
            taint=taints or None,
            tags=self.autoscaler_tags,
            # The autoscaler owns desired_size once the pool exists.
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
