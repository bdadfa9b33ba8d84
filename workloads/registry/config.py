"""Typed registry config (``configs/registry/default.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tuneops.core.config import StrictModel, load_config
from tuneops.core.paths import CONFIG_DIR
from tuneops.core.tracking import TrackingConfig

DEFAULT_CONFIG = CONFIG_DIR / "registry" / "default.yaml"


class Aliases(StrictModel):
    candidate: str = "candidate"
    champion: str = "champion"
    previous: str = "previous"


class GateConfig(StrictModel):
    split: str = "benchmark"
    base_label: str = "base"
    primary_metric: str = "key_fact_recall"
    min_gain_over_base: float = 0.02
    max_drop_vs_champion: dict[str, float] = Field(
        default_factory=lambda: {"key_fact_recall": 0.01, "rouge_l": 0.01}
    )


class LockConfig(StrictModel):
    """The promotion lock that ``promote`` and ``rollback`` hold in the registry itself."""

    # Registered model whose numbered entries (``<name>.000001``...) hold the lock; null is
    # ``<registry name>.promotion-lock``.
    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # A holder that has not released the lock this long after taking it is presumed dead, and
    # the next promote or rollback takes the lock over (and finishes what it left half done).
    ttl_s: float = Field(default=300.0, gt=0)
    # Wait this long after each alias write before reading it back to confirm it (a tracking
    # server whose database answers reads from a replica needs a moment).
    settle_s: float = Field(default=0.0, ge=0)


class RegistryConfig(StrictModel):
    name: str = Field(default="cloudops-assistant", min_length=1)
    model_artifact_path: str = "model"
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    aliases: Aliases = Field(default_factory=Aliases)
    gate: GateConfig = Field(default_factory=GateConfig)
    lock: LockConfig = Field(default_factory=LockConfig)
    card_limits: list[str] = Field(default_factory=list)

    @property
    def lock_name(self) -> str:
        return self.lock.name or f"{self.name}.promotion-lock"


def load_registry_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> RegistryConfig:
    return load_config(RegistryConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)
