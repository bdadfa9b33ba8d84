"""The demo's state: what each step hands to the steps after it, typed and immutable."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from tuneops.core.paths import default_tracking_uri

DEFAULT_MODEL_NAME = "cloudops-assistant"


@dataclass(frozen=True)
class StepOverrides:
    """``key=value`` config overrides per step (tests shrink the loop with them)."""

    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    registry: tuple[str, ...] = ()


@dataclass(frozen=True)
class LocalCloud:
    """The local environment's AWS: moto's server on loopback."""

    endpoint: str
    region: str
    artifacts_bucket: str


@dataclass(frozen=True)
class DemoState:
    overrides: StepOverrides = field(default_factory=StepOverrides)
    snapshot: Path | None = None  # dataset snapshot folder
    cloud: LocalCloud | None = None
    tracking_uri: str | None = None  # the MLflow server; None is the SQLite default
    artifacts_destination: str | None = None  # where that server keeps artifacts (s3://...)
    train_run_id: str | None = None
    merged_dir: Path | None = None  # the fine-tuned model, merged
    model_name: str = DEFAULT_MODEL_NAME  # registered model name
    model_version: str | None = None
    promoted: bool = False
    eval_report: Path | None = None
    gitops_dir: Path | None = None
    report: tuple[str, ...] = ()

    @property
    def tracking(self) -> str:
        """The tracking URI every step uses."""
        return self.tracking_uri or default_tracking_uri()

    def with_report(self, *lines: str, **changes) -> DemoState:
        """A copy with ``lines`` added to the report and ``changes`` applied."""
        return replace(self, report=(*self.report, *lines), **changes)
