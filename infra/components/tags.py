"""The environment's tags on every resource that takes tags."""

from __future__ import annotations

import jsii
from cdktf import IAspect, TerraformResource


@jsii.implements(IAspect)
class TagsAspect:
    """Merge the environment's tags into every resource that takes tags (resource tags win)."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def visit(self, node) -> None:
        if isinstance(node, TerraformResource) and hasattr(node, "tags_input"):
            current = node.tags_input or {}
            node.tags = {**self.tags, **current}
