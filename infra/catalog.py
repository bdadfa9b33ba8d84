"""The platform catalog: the Helm releases under ``platform/`` (data), read and validated here.

``platform/`` is deliberately not a Python package (it would shadow the standard ``platform``
module), so the code that reads it lives in this module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from infra.config import Environment
from infra.node_pools import RENDERERS
from tuneops.core.config import StrictModel, deep_merge, read_yaml, validate
from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT

PLATFORM_DIR = REPO_ROOT / "platform"
# An exact chart version: 1.2.3 or v1.2.3, with an optional pre-release; no ranges, no latest.
PINNED_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
# Stacks whose outputs a release may take values from: "<stack>.<output>".
OUTPUT_REF = re.compile(r"^(network|cluster|data)\.[a-z0-9_]+$")


class Release(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    repository: str
    chart: str
    version: str
    namespace: str = Field(pattern=r"^[a-z0-9-]+$")
    order: int = Field(ge=0)
    values: dict[str, Any] = Field(default_factory=dict)
    # chart value path -> "<stack>.<output>" (network, cluster or data)
    set_from: dict[str, str] = Field(default_factory=dict)
    # values rendered from the environment config by infra (a key of infra.node_pools.RENDERERS)
    values_from: str | None = None

    @field_validator("set_from")
    @classmethod
    def _output_refs(cls, value: dict[str, str]) -> dict[str, str]:
        for path, ref in value.items():
            if not OUTPUT_REF.match(ref):
                raise ValueError(
                    f"set_from {path}: {ref!r} is not <stack>.<output> (network, cluster, data)"
                )
        return value

    @field_validator("values_from")
    @classmethod
    def _renderer(cls, value: str | None) -> str | None:
        if value is not None and value not in RENDERERS:
            raise ValueError(f"values_from {value!r} is not one of {sorted(RENDERERS)}")
        return value

    @field_validator("version")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if not PINNED_VERSION.match(value):
            raise ValueError(f"chart version {value!r} is not an exact version (e.g. 1.2.3)")
        return value


class Catalog(StrictModel):
    releases: list[Release] = Field(min_length=1)

    def ordered(self) -> list[Release]:
        return sorted(self.releases, key=lambda r: (r.order, r.name))


def load_catalog(platform_dir: Path | None = None) -> Catalog:
    platform_dir = platform_dir or PLATFORM_DIR
    path = platform_dir / "catalog.yaml"
    catalog = validate(Catalog, read_yaml(path), str(path))
    names = [r.name for r in catalog.releases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: release names must be unique, repeated: {', '.join(dupes)}")
    return catalog


def values_for(release: Release, overlay: str, platform_dir: Path | None = None) -> dict[str, Any]:
    """The release's values with the environment overlay ``platform/values/<overlay>.yaml``."""
    platform_dir = platform_dir or PLATFORM_DIR
    path = platform_dir / "values" / f"{overlay}.yaml"
    overlays = read_yaml(path) if path.is_file() else {}
    unknown = set(overlays) - {r.name for r in load_catalog(platform_dir).releases}
    if unknown:
        raise UserError(f"{path}: values for releases not in the catalog: {sorted(unknown)}")
    return deep_merge(release.values, overlays.get(release.name) or {})


def release_values(
    release: Release, env: Environment, platform_dir: Path | None = None
) -> dict[str, Any]:
    """What the platform installs for ``release`` in ``env``: the catalog's values, the
    environment's overlay, and the values rendered from the environment config."""
    values = values_for(release, env.platform.values_overlay, platform_dir)
    if release.values_from:
        values = deep_merge(values, RENDERERS[release.values_from](env))
    return values
