"""Typed monitor config (``configs/monitor/default.yaml``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from tuneops.core.config import StrictModel, load_config
from tuneops.core.paths import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "monitor" / "default.yaml"


class DriftSection(StrictModel):
    window: int = Field(1000, ge=1)
    min_prompts: int = Field(20, ge=1)
    reference_split: str = "train"
    length_bins: int = Field(5, ge=2)
    vocab_top_k: int = Field(50, ge=1)
    psi_threshold: float = Field(0.2, gt=0)
    smoothing: float = Field(0.5, gt=0)


class MonitorConfig(StrictModel):
    drift: DriftSection = Field(default_factory=DriftSection)


def load_monitor_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> MonitorConfig:
    return load_config(MonitorConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)
