"""The skip list (``policies/skips.yaml``): which failing check is accepted where, and why.

A skip names the check, the environments it applies to and, where only some resources fail it,
those resources (shell-style patterns over the resource address checkov reports, such as
``aws_s3_bucket.storage_logs_bucket_*``). checkov runs every check; the gate then counts a
failure a skip covers as skipped, so the report shows what the skips hide, and a skip that
covers no failure of a scan it applies to is reported as dead.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import Field

from tuneops.core.config import StrictModel, read_yaml, validate


class Skip(StrictModel):
    id: str = Field(pattern=r"^CKV2?_[A-Z0-9_]+$")
    reason: str = Field(min_length=10)
    frameworks: list[str] = Field(default_factory=lambda: ["terraform_json"], min_length=1)
    # Where the check fails for a reason accepted here; it runs unskipped everywhere else.
    environments: list[str] = Field(min_length=1)
    # Patterns over checkov's resource address; empty: every resource the check fails on.
    resources: list[str] = Field(default_factory=list)

    def covers(self, check_id: str, resource: str) -> bool:
        return check_id == self.id and (
            not self.resources or any(fnmatchcase(resource, p) for p in self.resources)
        )


class SkipList(StrictModel):
    skips: list[Skip] = Field(default_factory=list)


def read_skips(path: Path) -> list[Skip]:
    return validate(SkipList, read_yaml(path), str(path)).skips


def skips_for(skips: list[Skip], framework: str, environment: str | None) -> list[Skip]:
    """The skips of one scan; a scan without an environment (rendered manifests) has none."""
    return [s for s in skips if framework in s.frameworks and environment in s.environments]


@dataclass
class Verdict:
    """A failing check after the skip list: ``skip`` is the skip that covers it, if any."""

    check_id: str
    resource: str
    skip: Skip | None


def judge(failures: list[tuple[str, str]], skips: list[Skip]) -> list[Verdict]:
    """Each (check id, resource) failure with the first skip that covers it."""
    return [
        Verdict(check, resource, next((s for s in skips if s.covers(check, resource)), None))
        for check, resource in failures
    ]


def dead_skips(verdicts: list[Verdict], skips: list[Skip]) -> list[str]:
    """The ids of the skips that covered no failure of this scan."""
    used = {id(v.skip) for v in verdicts if v.skip is not None}
    return [s.id for s in skips if id(s) not in used]
