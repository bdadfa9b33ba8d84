"""GPU node groups are labelled, tainted nvidia.com/gpu=true:NoSchedule, and (outside prod)
able to scale to zero."""

from __future__ import annotations

from _common import environment_of, first, listify
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def is_gpu_pool(conf) -> bool:
    labels = first(conf.get("labels")) or {}
    ami = str(first(conf.get("ami_type")) or "")
    name = str(first(conf.get("node_group_name")) or "")
    return (
        (isinstance(labels, dict) and "nvidia.com/gpu.present" in labels)
        or "GPU" in ami
        or "gpu" in name
    )


class GpuPoolTaintedLabelledScalable(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="GPU pools are labelled, tainted for GPU workloads and scale to zero outside prod",
            id="CKV_TUNEOPS_1",
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=("aws_eks_node_group",),
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        if not is_gpu_pool(conf):
            return CheckResult.PASSED
        labels = first(conf.get("labels")) or {}
        present = first(labels.get("nvidia.com/gpu.present")) if isinstance(labels, dict) else None
        if str(present).lower() != "true":
            return CheckResult.FAILED
        taints = [first(t) for t in listify(conf.get("taint"))]
        tainted = any(
            isinstance(t, dict)
            and first(t.get("key")) == "nvidia.com/gpu"
            and first(t.get("effect")) == "NO_SCHEDULE"
            and str(first(t.get("value"))).lower() == "true"
            for t in taints
        )
        if not tainted:
            return CheckResult.FAILED
        if environment_of(conf) != "prod":
            scaling = first(conf.get("scaling_config")) or {}
            if str(first(scaling.get("min_size"))) != "0":
                return CheckResult.FAILED
        return CheckResult.PASSED


check = GpuPoolTaintedLabelledScalable()
