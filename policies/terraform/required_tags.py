"""Every taggable resource carries the environment, owner and cost-center tags."""

from __future__ import annotations

from _common import REQUIRED_TAGS, tags_of
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

# The taggable resource types the stacks use (resources that take no tags are not listed).
TAGGABLE = (
    "aws_vpc",
    "aws_subnet",
    "aws_internet_gateway",
    "aws_nat_gateway",
    "aws_eip",
    "aws_route_table",
    "aws_vpc_endpoint",
    "aws_flow_log",
    "aws_default_security_group",
    "aws_security_group",
    "aws_cloudwatch_log_group",
    "aws_kms_key",
    "aws_iam_role",
    "aws_iam_policy",
    "aws_iam_openid_connect_provider",
    "aws_eks_cluster",
    "aws_eks_node_group",
    "aws_eks_addon",
    "aws_eks_pod_identity_association",
    "aws_eks_access_entry",
    "aws_sqs_queue",
    "aws_cloudwatch_event_rule",
    "aws_launch_template",
    "aws_s3_bucket",
    "aws_db_instance",
    "aws_db_subnet_group",
    "aws_db_parameter_group",
    "aws_ecr_repository",
    "aws_vpc_security_group_ingress_rule",
)


class RequiredTags(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Taggable resources carry environment, owner and cost-center tags",
            id="CKV_TUNEOPS_6",
            categories=(CheckCategories.CONVENTION,),
            supported_resources=TAGGABLE,
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        tags = tags_of(conf)
        missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
        return CheckResult.FAILED if missing else CheckResult.PASSED


check = RequiredTags()
