"""Every container sets CPU and memory requests and limits."""

from __future__ import annotations

from _k8s import WORKLOAD_KINDS, workload_units
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check


class RequestsAndLimits(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Containers set CPU and memory requests and limits",
            id="CKV_TUNEOPS_K8S_2",
            categories=(CheckCategories.KUBERNETES,),
            supported_entities=WORKLOAD_KINDS,
        )

    def scan_spec_conf(self, conf) -> CheckResult:
        for _, cs in workload_units(conf):
            for c in cs:
                resources = c.get("resources") or {}
                for section in ("requests", "limits"):
                    values = resources.get(section) or {}
                    if not values.get("cpu") or not values.get("memory"):
                        return CheckResult.FAILED
        return CheckResult.PASSED


check = RequestsAndLimits()
