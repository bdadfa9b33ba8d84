"""What an evaluation produces: per model, the scored answers and their aggregates; per run,
the candidate, its baselines and the facts the report states. The runner fills these and the
report reads them, so both import this module and neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

CANDIDATE = "candidate"


@dataclass
class ModelEval:
    label: str
    ref: str  # as given; a models:/ alias stays an alias here, its version is in ``version``
    version: str | None  # the registered version evaluated (the one loaded)
    records: list[dict[str, Any]]
    aggregates: dict[str, dict[str, Any]]  # split -> aggregate_groups(...)
    seconds: float
    dtype: str | None = None  # float32, bfloat16, ...; None for an endpoint
    precision_reason: str = ""  # why that dtype (workloads.models.precision)

    def overall(self, split: str) -> dict[str, Any]:
        return self.aggregates.get(split, {}).get("overall", {})


@dataclass
class EvalResult:
    candidate: ModelEval
    baselines: list[ModelEval]
    notes: list[str]
    output_dir: Path
    run_id: str
    benchmark_digest: str | None
    judge_prompt: str | None
    splits: list[str]
    system_prompt: str | None = None

    @property
    def models(self) -> list[ModelEval]:
        return [self.candidate, *self.baselines]
