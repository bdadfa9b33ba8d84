"""Every Helm release pins an exact chart version (no range, no latest, never empty)."""

from __future__ import annotations

import re

from _common import first
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

EXACT = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")


class HelmChartPinned(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Helm releases pin an exact chart version",
            id="CKV_TUNEOPS_3",
            categories=(CheckCategories.SUPPLY_CHAIN,),
            supported_resources=("helm_release",),
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        version = first(conf.get("version"))
        if isinstance(version, str) and EXACT.match(version):
            return CheckResult.PASSED
        return CheckResult.FAILED


check = HelmChartPinned()
