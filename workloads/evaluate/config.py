"""Typed evaluation config (``configs/eval/default.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tuneops.core.config import StrictModel, load_config
from tuneops.core.paths import CONFIG_DIR, REPO_ROOT
from tuneops.core.tracking import TrackingConfig

DEFAULT_CONFIG = CONFIG_DIR / "eval" / "default.yaml"

Split = Literal["benchmark", "test"]


class TestSplitConfig(StrictModel):
    dataset: str = "cloudops"
    max_examples: int | None = Field(default=200, ge=1)
    required: bool = False


class GenerationConfig(StrictModel):
    system_prompt: str | None = None
    max_new_tokens: int = Field(default=128, ge=1, le=4096)
    max_input_tokens: int = Field(default=1024, ge=16)
    batch_size: int = Field(default=160, ge=1)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    repetition_penalty: float = Field(default=1.0, gt=0)
    threads: int | None = Field(default=None, ge=1)
    cpu_prepack: bool = True
    answer_cache: bool = True
    endpoint_concurrency: int = Field(default=4, ge=1)
    endpoint_timeout_s: float = Field(default=120.0, gt=0)
    endpoint_api_key_env: str = "TUNEOPS_EVAL_API_KEY"


class JudgeConfig(StrictModel):
    enabled: bool = False
    base_url: str = "http://127.0.0.1:8080/openai/v1"
    model: str | None = None
    api_key_env: str = "TUNEOPS_JUDGE_API_KEY"
    prompt: str = "workloads/evaluate/prompts/judge_v1.md"
    max_tokens: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    concurrency: int = Field(default=4, ge=1)

    def prompt_path(self) -> Path:
        path = Path(self.prompt)
        return path if path.is_absolute() else REPO_ROOT / path


class ReportConfig(StrictModel):
    output_dir: str | None = None
    primary_metric: str = "key_fact_recall"
    table_metrics: list[str] = Field(
        default_factory=lambda: [
            "key_fact_recall",
            "rouge_l",
            "bleu",
            "chrf",
            "exact_match",
            "judge_grade",
            "empty_rate",
            "runaway_rate",
            "answer_tokens",
            "latency_p50_s",
            "latency_p95_s",
            "tokens_per_s",
        ]
    )
    chart_metrics: list[str] = Field(
        default_factory=lambda: ["key_fact_recall", "rouge_l", "chrf", "bleu", "exact_match"]
    )
    worst_n: int = Field(default=10, ge=0)


class EvalTracking(TrackingConfig):
    experiment: str = "tuneops-eval"


class EvalConfig(StrictModel):
    benchmark: str | None = None
    splits: list[Split] = Field(default_factory=lambda: ["benchmark", "test"], min_length=1)
    benchmark_limit: int | None = Field(default=None, ge=1)
    test_split: TestSplitConfig = Field(default_factory=TestSplitConfig)
    baselines: dict[str, str] = Field(default_factory=dict)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    tracking: EvalTracking = Field(default_factory=EvalTracking)


def load_eval_config(
    path: str | Path | None = None, *, env: str | None = None, overrides: list[str] | None = None
) -> EvalConfig:
    return load_config(EvalConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)
