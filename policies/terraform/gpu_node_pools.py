"""GPU capacity comes from Karpenter NodePools that are labelled, tainted
nvidia.com/gpu=true:NoSchedule, limited in GPUs and consolidated when idle (so they scale to
zero); no managed node group is a GPU pool (managed node groups are the system pool only)."""

from __future__ import annotations

from typing import Any

import yaml
from _common import first, listify
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

GPU_LABELS = ("tuneops.io/accelerator", "nvidia.com/gpu.present")
SCALES_TO_ZERO = ("WhenEmptyOrUnderutilized", "WhenEmpty")


def is_gpu_node_group(conf: dict[str, Any]) -> bool:
    labels = first(conf.get("labels")) or {}
    ami = str(first(conf.get("ami_type")) or "")
    name = str(first(conf.get("node_group_name")) or "")
    return (
        (isinstance(labels, dict) and any(label in labels for label in GPU_LABELS))
        or "GPU" in ami
        or "NVIDIA" in ami
        or "gpu" in name
    )


def _strings(value: Any) -> list[str]:
    """Every string inside checkov's nesting of an attribute."""
    if isinstance(value, str):
        return [value]
    return [text for item in listify(value) for text in _strings(item)]


def node_pools(conf: dict[str, Any]) -> list[dict[str, Any]]:
    """The Karpenter NodePools among the manifests in a helm_release's values."""
    found = []
    for text in _strings(conf.get("values")):
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        resources = values.get("resources") if isinstance(values, dict) else None
        for manifest in resources if isinstance(resources, list) else []:
            if (
                isinstance(manifest, dict)
                and manifest.get("kind") == "NodePool"
                and str(manifest.get("apiVersion", "")).startswith("karpenter.sh/")
            ):
                found.append(manifest)
    return found


def gpu_pool_ok(pool: dict[str, Any]) -> bool:
    """A GPU NodePool (by its labels) is tainted, GPU-limited and consolidated when idle."""
    spec = pool.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not any(label in labels for label in GPU_LABELS):
        return True
    taints = (template.get("spec") or {}).get("taints") or []
    tainted = any(
        t.get("key") == "nvidia.com/gpu"
        and str(t.get("value")) == "true"
        and t.get("effect") == "NoSchedule"
        for t in taints
        if isinstance(t, dict)
    )
    limited = "nvidia.com/gpu" in (spec.get("limits") or {})
    policy = (spec.get("disruption") or {}).get("consolidationPolicy")
    return tainted and limited and policy in SCALES_TO_ZERO


class GpuCapacityFromKarpenter(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="GPU capacity comes from tainted, limited Karpenter NodePools that scale to zero",
            id="CKV_TUNEOPS_1",
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=("aws_eks_node_group", "helm_release"),
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        if self.entity_type == "aws_eks_node_group":
            return CheckResult.FAILED if is_gpu_node_group(conf) else CheckResult.PASSED
        pools = node_pools(conf)
        return CheckResult.PASSED if all(gpu_pool_ok(p) for p in pools) else CheckResult.FAILED


check = GpuCapacityFromKarpenter()
