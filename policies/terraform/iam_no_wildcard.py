"""No IAM policy allows a wildcard action on every resource ("*" or "service:*" on "*")."""

from __future__ import annotations

from _common import as_policy, first, listify
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.data.base_check import BaseDataCheck
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


def _wild_action(action) -> bool:
    action = str(action)
    return action == "*" or action.endswith(":*")


def statement_is_wild(effect, actions, resources) -> bool:
    if str(effect or "Allow") != "Allow":
        return False
    return any(_wild_action(a) for a in actions) and any(str(r) == "*" for r in resources)


def document_is_wild(doc: dict) -> bool:
    for st in listify(doc.get("Statement")):
        if not isinstance(st, dict):
            continue
        if statement_is_wild(
            st.get("Effect"), listify(st.get("Action")), listify(st.get("Resource"))
        ):
            return True
    return False


class IamPolicyNoWildcard(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="IAM policies grant no wildcard action on every resource",
            id="CKV_TUNEOPS_4",
            categories=(CheckCategories.IAM,),
            supported_resources=(
                "aws_iam_policy",
                "aws_iam_role_policy",
                "aws_iam_user_policy",
                "aws_iam_group_policy",
            ),
        )

    def scan_resource_conf(self, conf) -> CheckResult:
        doc = as_policy(conf.get("policy"))
        if doc is None:
            # A reference to a policy document: that document is checked on its own.
            return CheckResult.PASSED
        return CheckResult.FAILED if document_is_wild(doc) else CheckResult.PASSED


class IamDocumentNoWildcard(BaseDataCheck):
    def __init__(self) -> None:
        super().__init__(
            name="IAM policy documents grant no wildcard action on every resource",
            id="CKV_TUNEOPS_5",
            categories=(CheckCategories.IAM,),
            supported_data=("aws_iam_policy_document",),
        )

    def scan_data_conf(self, conf) -> CheckResult:
        for st in listify(conf.get("statement")):
            st = first(st)
            if not isinstance(st, dict):
                continue
            actions = listify(first(st.get("actions")))
            resources = listify(first(st.get("resources")))
            if statement_is_wild(first(st.get("effect")), actions, resources):
                return CheckResult.FAILED
        return CheckResult.PASSED


check = IamPolicyNoWildcard()
data_check = IamDocumentNoWildcard()
