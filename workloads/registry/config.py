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


class RegistryConfig(StrictModel):
    name: str = Field(default="cloudops-assistant", min_length=1)
    model_artifact_path: str = "model"
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    aliases: Aliases = Field(default_factory=Aliases)
    gate: GateConfig = Field(default_factory=GateConfig)
    card_limits: list[str] = Field(default_factory=list)


def load_registry_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> RegistryConfig:
    return load_config(RegistryConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)
