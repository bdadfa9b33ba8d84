"""Karpenter's NodePools and EC2NodeClasses, rendered from the environment config
(``cluster.karpenter`` in configs/infra/environments/<env>.yaml) and installed by the platform
stack through the ``karpenter-node-pools`` release of platform/catalog.yaml.

- One CPU pool for everything that is neither a controller nor a GPU workload.
- One pool per GPU pool of the config: labelled ``tuneops.io/accelerator: nvidia`` and tainted
  ``nvidia.com/gpu=true:NoSchedule`` (what configs/deploy's GPU workloads select and tolerate),
  limited to ``limit`` GPUs: the configured maximum, or fewer when the cost ceiling buys
  fewer.
- Every pool launches the capacity types of its config (spot first whenever spot is allowed:
  Karpenter prefers it), into its capacity reservations first when it has some, and
  consolidates empty or underused nodes after ``consolidate_after``: an idle pool has no nodes.

Manifests are plain dicts (karpenter.sh/v1, karpenter.k8s.aws/v1 of the pinned chart 1.14.1).
"""

from __future__ import annotations

from typing import Any

from infra.config import Environment, GpuNodePool, KarpenterPool

# Subnets carry this tag with the cluster's name (infra/stacks/network.py); EKS tags the
# cluster security group with aws:eks:cluster-name itself.
DISCOVERY_TAG = "karpenter.sh/discovery"
GPU_LABELS = {"tuneops.io/accelerator": "nvidia", "nvidia.com/gpu.present": "true"}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
CPU_POOL = "cpu"


def node_role_name(env: Environment) -> str:
    """The IAM role of Karpenter's nodes (created by the cluster stack)."""
    return f"{env.cluster.name}-karpenter-node"


def node_class(env: Environment, name: str, pool: KarpenterPool) -> dict[str, Any]:
    """The EC2NodeClass of one pool: AMI, subnets, security group, node role, root volume."""
    cluster = env.cluster.name
    spec: dict[str, Any] = {
        "amiSelectorTerms": [{"alias": env.cluster.karpenter.ami_alias}],
        "role": node_role_name(env),
        "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster}}],
        "securityGroupSelectorTerms": [{"tags": {"aws:eks:cluster-name": cluster}}],
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpPutResponseHopLimit": 1,
            "httpTokens": "required",
        },
        "blockDeviceMappings": [
            {
                "deviceName": "/dev/xvda",
                "ebs": {
                    "volumeSize": f"{pool.disk_gb}Gi",
                    "volumeType": "gp3",
                    "encrypted": True,
                    "deleteOnTermination": True,
                },
            }
        ],
        "detailedMonitoring": True,
        "tags": {**env.tags, "tuneops.io/pool": name},
    }
    if pool.capacity_reservation_ids:
        spec["capacityReservationSelectorTerms"] = [
            {"id": rid} for rid in pool.capacity_reservation_ids
        ]
    return {
        "apiVersion": "karpenter.k8s.aws/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": name},
        "spec": spec,
    }


def _requirements(env: Environment, pool: KarpenterPool) -> list[dict[str, Any]]:
    capacity = list(pool.capacity_types)
    if pool.capacity_reservation_ids:
        capacity = ["reserved", *capacity]
    return [
        {
            "key": "node.kubernetes.io/instance-type",
            "operator": "In",
            "values": pool.instance_types,
        },
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": capacity},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": env.network.azs},
    ]


def node_pool(
    env: Environment, name: str, pool: KarpenterPool, limits: dict[str, str]
) -> dict[str, Any]:
    """The NodePool ``name`` on its own EC2NodeClass, limited to ``limits``."""
    gpu = isinstance(pool, GpuNodePool)
    template: dict[str, Any] = {
        "metadata": {"labels": {"tuneops.io/pool": name, **(GPU_LABELS if gpu else {})}},
        "spec": {
            "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": name},
            "requirements": _requirements(env, pool),
            "expireAfter": pool.expire_after,
        },
    }
    if gpu:
        template["spec"]["taints"] = [dict(GPU_TAINT)]
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": template,
            "limits": limits,
            "disruption": {
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": pool.consolidate_after,
            },
        },
    }


def render_node_pools(env: Environment) -> list[dict[str, Any]]:
    """Every EC2NodeClass and NodePool of ``env``: the CPU pool, then the GPU pools."""
    cfg = env.cluster.karpenter
    pools: list[tuple[str, KarpenterPool, dict[str, str]]] = [
        (CPU_POOL, cfg.cpu_pool, {"cpu": str(cfg.cpu_pool.limit)})
    ]
    pools += [(p.name, p, {"nvidia.com/gpu": str(p.limit)}) for p in cfg.gpu_pools]
    manifests: list[dict[str, Any]] = []
    for name, pool, limits in pools:
        manifests.append(node_class(env, name, pool))
        manifests.append(node_pool(env, name, pool, limits))
    return manifests


# Values a catalog release takes from a renderer of its own (``values_from``).
RENDERERS = {"karpenter-node-pools": lambda env: {"resources": render_node_pools(env)}}
