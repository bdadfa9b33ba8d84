"""Images are pinned: a tag other than latest, or a digest."""

from __future__ import annotations

from _k8s import WORKLOAD_KINDS, workload_units
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.kubernetes.checks.resource.base_spec_check import BaseK8Check


def pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    return name.rsplit(":", 1)[1] not in ("", "latest")


class ImagePinned(BaseK8Check):
    def __init__(self) -> None:
        super().__init__(
            name="Container images are pinned to a tag other than latest, or a digest",
            id="CKV_TUNEOPS_K8S_1",
            categories=(CheckCategories.SUPPLY_CHAIN,),
            supported_entities=WORKLOAD_KINDS,
        )

    def scan_spec_conf(self, conf) -> CheckResult:
        for _, cs in workload_units(conf):
            for c in cs:
                image = c.get("image") or c.get("storageUri")
                if "image" in c and not (isinstance(image, str) and pinned(image)):
                    return CheckResult.FAILED
        return CheckResult.PASSED


check = ImagePinned()
