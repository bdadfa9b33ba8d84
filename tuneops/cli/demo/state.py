"""The demo's state: what each step hands to the steps after it, typed and immutable."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.paths import default_tracking_uri

DEFAULT_MODEL_NAME = "cloudops-assistant"


@dataclass(frozen=True)
class StepOverrides:
    """``key=value`` config overrides per step (tests shrink the loop with them)."""

    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    registry: tuple[str, ...] = ()

    @classmethod
    def parse(cls, sets: list[str]) -> StepOverrides:
        """``STEP.key=value`` items (``tuneops demo --set``) sorted into their steps."""
        steps: dict[str, list[str]] = {name: [] for name in ("train", "eval", "registry")}
        for item in sets:
            step, _, rest = item.partition(".")
            if step not in steps or "=" not in rest or rest.startswith("="):
                raise UserError(
                    f"--set {item!r}: expected STEP.KEY=VALUE with STEP one of "
                    f"{', '.join(steps)} (e.g. train.seed=7)"
                )
            steps[step].append(rest)
        return cls(**{name: tuple(items) for name, items in steps.items()})


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
    timings: tuple[tuple[str, float], ...] = ()  # (step title, wall seconds), in run order
    # Background work (background.BackgroundJob): the infrastructure's apply, the local
    # platform's start after it, and the base model's benchmark answers, all while the
    # fine-tune runs; the base model's development answers after it.
    infra_apply: Any = None
    platform_start: Any = None
    base_answers: Any = None
    base_dev_answers: Any = None
    pending_training: Any = None  # the fine-tune, until its MLflow run is written
    dev_recall: float | None = None  # the fine-tuned model's validation key-fact recall

    @property
    def background_jobs(self) -> tuple[Any, ...]:
        """Every background job the steps started so far."""
        jobs = (self.infra_apply, self.platform_start, self.base_answers, self.base_dev_answers)
        return tuple(job for job in jobs if job is not None)

    @property
    def tracking(self) -> str:
        """The tracking URI every step uses."""
        return self.tracking_uri or default_tracking_uri()

    def with_timing(self, title: str, seconds: float) -> DemoState:
        return replace(self, timings=(*self.timings, (title, seconds)))

    def with_report(self, *lines: str, **changes) -> DemoState:
        """A copy with ``lines`` added to the report and ``changes`` applied."""
        return replace(self, report=(*self.report, *lines), **changes)
