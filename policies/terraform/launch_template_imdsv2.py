"""Every launch template requires IMDSv2 (session tokens) and encrypts its volumes."""

from __future__ import annotations

from _common import first, listify
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


class LaunchTemplateImdsV2(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Launch templates require IMDSv2 and encrypt every EBS volume",
            id="CKV_TUNEOPS_2",
            categories=(CheckCategories.GENERAL_SECURITY,),
            supported_resources=("aws_launch_template",),
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        options = first(conf.get("metadata_options")) or {}
        if not isinstance(options, dict) or first(options.get("http_tokens")) != "required":
            return CheckResult.FAILED
        for mapping in listify(conf.get("block_device_mappings")):
            ebs = first(first(mapping).get("ebs")) if isinstance(first(mapping), dict) else None
            if isinstance(ebs, dict) and str(first(ebs.get("encrypted"))).lower() != "true":
                return CheckResult.FAILED
        return CheckResult.PASSED


check = LaunchTemplateImdsV2()
