"""Run a candidate and its baselines over the evaluation items, score, compare, report, log.

Flow: load items (``items``) -> pin every model reference once (``plan``) -> for each model,
generate every answer in batches and score it -> optionally have a judge grade them ->
aggregate overall / per category / per difficulty -> write the report directory atomically ->
log metrics, tags and the report to the candidate's MLflow run (``mlflow_log``).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tuneops.core.io import atomic_dir
from tuneops.core.paths import cache_dir
from workloads.evaluate.config import EvalConfig
from workloads.evaluate.generate import Generation, open_generator
from workloads.evaluate.items import Items, load_items
from workloads.evaluate.judge import Judge
from workloads.evaluate.metrics import aggregate_groups, score_answer
from workloads.evaluate.mlflow_log import log_result, mlflow_client, new_run, tracking_uri
from workloads.evaluate.plan import PlannedModel, check_labels, plan_baselines, plan_candidate
from workloads.evaluate.report import write_report
from workloads.evaluate.results import EvalResult, ModelEval


def _record(item: dict[str, Any], gen: Generation, label: str) -> dict[str, Any]:
    rec = {k: v for k, v in item.items() if k != "prompt"}
    rec.update(
        model=label,
        answer=gen.text,
        answer_tokens=gen.answer_tokens,
        latency_s=gen.latency_s,
        gen_seconds=gen.gen_seconds,
        finished=gen.finished,
        empty=not gen.text.strip(),
        runaway=not gen.finished,
        metrics=score_answer(gen.text, item["reference"], item["key_facts"]),
        judge=None,
    )
    return rec


def _generate(model: PlannedModel, prompts: list, config: EvalConfig):
    """Every answer of one model: ``(answers, dtype, why, note or None)``, from the answer
    cache where the model cannot have changed."""
    from workloads.evaluate.answer_cache import AnswerCache

    cache = AnswerCache.for_model(model.load_ref, config.generation, prompts)
    stored = cache.load() if cache is not None else None
    if stored is not None:
        note = f"{model.label}: answers reused from {cache.path} (same weights, prompts, settings)"
        return (*stored, note)
    generator = open_generator(
        model.load_ref,
        config.generation,
        api_key=os.environ.get(config.generation.endpoint_api_key_env),
        tracking_uri=tracking_uri(config),
    )
    try:
        with tqdm(total=len(prompts), desc=f"eval {model.label}", unit="answer") as bar:
            gens = generator.generate(prompts, progress=bar.update)
    finally:
        generator.close()
    if cache is not None:
        cache.save(gens, generator.precision, generator.precision_reason)
    return gens, generator.precision, generator.precision_reason, None


def evaluate_model(
    model: PlannedModel, items: Items, config: EvalConfig, notes: list[str] | None = None
) -> ModelEval:
    """Generate and score every item with one model, loaded by its pinned reference."""
    started = time.perf_counter()
    prompts = [r["prompt"] for r in items.records]
    gens, dtype, reason, note = _generate(model, prompts, config)
    if note and notes is not None:
        notes.append(note)
    records = [
        _record(item, gen, model.label) for item, gen in zip(items.records, gens, strict=True)
    ]
    return ModelEval(
        model.label,
        model.ref,
        model.version,
        records,
        {},
        time.perf_counter() - started,
        dtype=dtype,
        precision_reason=reason,
    )


def _judge(judge: Judge, evals: list[ModelEval]) -> None:
    try:
        for m in evals:
            with tqdm(total=len(m.records), desc=f"judge {m.label}", unit="answer") as bar:
                grades = judge.grade(m.records, progress=bar.update)
            for rec, grade in zip(m.records, grades, strict=True):
                rec["judge"] = grade
    finally:
        judge.close()


def _aggregate(model: ModelEval, splits: list[str]) -> None:
    model.aggregates = {
        split: aggregate_groups([r for r in model.records if r["split"] == split])
        for split in splits
        if any(r["split"] == split for r in model.records)
    }


def _output_dir(config: EvalConfig, output_dir: str | Path | None, run_id: str | None) -> Path:
    chosen = output_dir or config.report.output_dir
    if chosen:
        return Path(chosen)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return cache_dir() / "eval" / f"{stamp}-{(run_id or 'local')[:12]}"


def run_eval(
    config: EvalConfig,
    model: str,
    baselines: dict[str, str] | None = None,
    *,
    run_id: str | None = None,
    output_dir: str | Path | None = None,
    log_to_mlflow: bool = True,
) -> EvalResult:
    """Evaluate ``model`` against ``baselines`` (label -> ref; None = the config's)."""
    baselines = dict(config.baselines if baselines is None else baselines)
    check_labels(baselines)
    client = mlflow_client(config)
    items = load_items(config)
    notes = list(items.notes)
    candidate = plan_candidate(model, client, run_id)
    run_id = candidate.run_id
    # Fail fast on a bad judge endpoint, before generating.
    judge = Judge(config.judge) if config.judge.enabled else None
    plan = [candidate, *plan_baselines(baselines, client, run_id, notes)]

    evals = [evaluate_model(planned, items, config, notes) for planned in plan]
    if judge is not None:
        _judge(judge, evals)
    splits = [s for s in config.splits if items.count(s)]
    for m in evals:
        _aggregate(m, splits)

    if log_to_mlflow and run_id is None:
        run_id = new_run(client, config, model)
    result = EvalResult(
        candidate=evals[0],
        baselines=evals[1:],
        notes=notes,
        output_dir=_output_dir(config, output_dir, run_id),
        run_id=run_id or "",
        benchmark_digest=items.benchmark_digest,
        judge_prompt=judge.prompt.version if judge else None,
        splits=splits,
        system_prompt=items.system_prompt,
    )
    with atomic_dir(result.output_dir) as tmp:
        write_report(result, config, tmp)
    if log_to_mlflow:
        log_result(client, result, config)
    return result
