"""Pods that ask for GPUs tolerate the GPU pools' taint nvidia.com/gpu=true:NoSchedule."""

from __future__ import annotations

from _k8s import WORKLOAD_KINDS, gpu_count, workload_units
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check


def tolerates_gpu(tolerations) -> bool:
    for t in tolerations or []:
        if not isinstance(t, dict):
            continue
        key_ok = t.get("key") == "nvidia.com/gpu" or (
            t.get("operator") == "Exists" and not t.get("key")
        )
        effect_ok = t.get("effect") in (None, "", "NoSchedule")
        value_ok = t.get("operator") == "Exists" or str(t.get("value")) == "true"
        if key_ok and effect_ok and value_ok:
            return True
    return False


class GpuToleration(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="GPU workloads tolerate the nvidia.com/gpu taint",
            id="CKV_TUNEOPS_K8S_4",
            categories=(CheckCategories.KUBERNETES,),
            supported_entities=WORKLOAD_KINDS,
        )

    def scan_spec_conf(self, conf) -> CheckResult:
        for pod, cs in workload_units(conf):
            if any(gpu_count(c) for c in cs) and not tolerates_gpu(pod.get("tolerations")):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = GpuToleration()
