"""Containers run as a non-root user (runAsNonRoot on the pod or every container)."""

from __future__ import annotations

from _k8s import WORKLOAD_KINDS, workload_units
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check


def _non_root(context: dict | None) -> bool | None:
    if not isinstance(context, dict):
        return None
    if context.get("runAsUser") == 0:
        return False
    if "runAsNonRoot" in context:
        return bool(context["runAsNonRoot"])
    return None


class NonRoot(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Containers run as non-root",
            id="CKV_TUNEOPS_K8S_3",
            categories=(CheckCategories.KUBERNETES,),
            supported_entities=WORKLOAD_KINDS,
        )

    def scan_spec_conf(self, conf) -> CheckResult:
        for pod, cs in workload_units(conf):
            pod_level = _non_root(pod.get("securityContext"))
            for c in cs:
                own = _non_root(c.get("securityContext"))
                if own is False or (own is None and not pod_level):
                    return CheckResult.FAILED
        return CheckResult.PASSED


check = NonRoot()
