"""Run a candidate and its baselines over the evaluation items, score, compare, report, log.

Flow: load items (benchmark questions and/or the dataset snapshot's test split) -> for each
model, generate every answer in batches -> score each answer -> optionally have a judge grade
them -> aggregate overall / per category / per difficulty -> write the report directory
atomically -> log metrics, tags and the report to the candidate's MLflow run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tuneops.core.errors import UserError
from tuneops.core.paths import cache_dir, default_tracking_uri
from workloads.evaluate.config import EvalConfig
from workloads.evaluate.metrics import aggregate_groups, score_answer

log = logging.getLogger(__name__)

CANDIDATE = "candidate"
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


# --------------------------------------------------------------------------------------------
# Items


@dataclass
class Items:
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    benchmark_digest: str | None = None

    def count(self, split: str) -> int:
        return sum(1 for r in self.records if r["split"] == split)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"benchmark file not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {n}: not valid JSON ({exc.msg})") from exc
    return rows


def load_benchmark_rows(path: str | None) -> list[dict[str, Any]]:
    """The benchmark through the data area's loader when it is installed, else read directly."""
    try:
        from workloads.data.benchmark import load_benchmark
    except ImportError:
        load_benchmark = None
    if load_benchmark is not None:
        return list(load_benchmark(Path(path) if path else None))
    if path is None:
        raise UserError(
            "no benchmark: workloads.data.benchmark is not available; set `benchmark:` in the "
            "eval config to a JSONL file"
        )
    return _read_jsonl(Path(path))


def system_prompt(config: EvalConfig) -> str | None:
    """The system message for benchmark questions. ``dataset`` means the one the training data
    carries (``formatting.system_prompt`` of the data config), so the candidate is asked the way
    it was trained, and the baselines the same way."""
    value = config.generation.system_prompt
    if value != "dataset":
        return value or None
    try:
        from workloads.data.config import load_data_config
    except ImportError as exc:
        raise UserError(
            "generation.system_prompt is 'dataset' but the data package is missing"
        ) from exc
    return load_data_config().formatting.system_prompt or None


def _prompt(question: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}]


def benchmark_items(config: EvalConfig) -> tuple[list[dict[str, Any]], str]:
    rows = load_benchmark_rows(config.benchmark)
    system = system_prompt(config)
    if config.benchmark_limit:
        rows = rows[: config.benchmark_limit]
    items = []
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("id", "question", "reference") if not row.get(k)]
        if missing:
            raise UserError(f"benchmark record {n} lacks {', '.join(missing)}")
        items.append(
            {
                "id": str(row["id"]),
                "split": "benchmark",
                "question": row["question"],
                "reference": row["reference"],
                "key_facts": list(row.get("key_facts") or []),
                "category": row.get("category"),
                "difficulty": row.get("difficulty"),
                "prompt": _prompt(row["question"], system),
            }
        )
    canonical = json.dumps(
        [[i["id"], i["question"], i["reference"], i["key_facts"]] for i in items],
        ensure_ascii=False,
    )
    return items, hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_items(config: EvalConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat records of the snapshot's test split: prompt = all turns before the last answer."""
    notes: list[str] = []
    ref = config.test_split.dataset
    try:
        from workloads.data.snapshot import load_snapshot

        snapshot = load_snapshot(ref)
        rows = snapshot.split("test")
    except (ImportError, UserError, FileNotFoundError) as exc:
        if config.test_split.required:
            raise UserError(f"test split of dataset {ref!r} unavailable: {exc}") from exc
        return [], [f"test split skipped: dataset {ref!r} unavailable ({exc})"]
    items, text_records = [], 0
    system = system_prompt(config)
    for row in rows:
        messages = row.get("messages") or []
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        if row.get("kind") == "text" or last < 1:
            text_records += 1
            continue
        prompt = [dict(m) for m in messages[:last]]
        if system and prompt[0].get("role") != "system":
            prompt.insert(0, {"role": "system", "content": system})
        question = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
        items.append(
            {
                "id": str(row.get("id")),
                "split": "test",
                "question": question,
                "reference": messages[last]["content"],
                "key_facts": [],
                "category": row.get("category"),
                "difficulty": None,
                "prompt": prompt,
            }
        )
        if config.test_split.max_examples and len(items) >= config.test_split.max_examples:
            break
    if text_records:
        notes.append(f"test split: {text_records} records without a question/answer pair skipped")
    notes.append(f"test split: {len(items)} records from snapshot {snapshot.name}/{snapshot.id}")
    return items, notes


def load_items(config: EvalConfig) -> Items:
    items = Items(records=[])
    if "benchmark" in config.splits:
        records, digest = benchmark_items(config)
        items.records += records
        items.benchmark_digest = digest
    if "test" in config.splits:
        records, notes = test_items(config)
        items.records += records
        items.notes += notes
    if not items.records:
        raise UserError("nothing to evaluate: no benchmark questions and no test records")
    return items


# --------------------------------------------------------------------------------------------
# Models and runs


@dataclass
class ModelEval:
    label: str
    ref: str
    version: str | None
    records: list[dict[str, Any]]
    aggregates: dict[str, dict[str, Any]]  # split -> aggregate_groups(...)
    seconds: float

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

    @property
    def models(self) -> list[ModelEval]:
        return [self.candidate, *self.baselines]

    def baseline(self, label: str) -> ModelEval | None:
        return next((b for b in self.baselines if b.label == label), None)


def parse_baselines(values: list[str] | None, defaults: dict[str, str]) -> dict[str, str]:
    """``--baseline`` values, each ``REF`` or ``LABEL=REF``; none given -> the config's."""
    if not values:
        return dict(defaults)
    out: dict[str, str] = {}
    for n, value in enumerate(values, 1):
        label, sep, ref = value.partition("=")
        if not sep or "://" in label or label.startswith(("models:", "runs:", "embedded:")):
            label, ref = _default_label(value, n), value
        out[label] = ref
    return out


def _default_label(ref: str, n: int) -> str:
    if ref.startswith("embedded:"):
        return "base"
    if "@" in ref and ref.startswith("models:/"):
        return ref.rsplit("@", 1)[1]
    return f"baseline{n}"


def _mlflow_client(config: EvalConfig):
    import mlflow
    from mlflow import MlflowClient

    uri = config.tracking.tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _model_version(client: Any, ref: str) -> Any | None:
    """The registered version a ``models:/`` ref points at; None when it does not exist."""
    from mlflow.exceptions import MlflowException

    body = ref[len("models:/") :].strip("/")
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        name, _, version = body.partition("/")
        if version.isdigit():
            return client.get_model_version(name, version)
        raise UserError(f"model ref {ref}: use models:/<name>@<alias> or models:/<name>/<n>")
    except MlflowException:
        return None


def candidate_run_id(client: Any, ref: str, run_id: str | None) -> str | None:
    if run_id:
        return run_id
    if ref.startswith("runs:/"):
        return ref[len("runs:/") :].split("/", 1)[0]
    if ref.startswith("models:/"):
        mv = _model_version(client, ref)
        if mv is None:
            raise UserError(f"{ref} does not exist in the MLflow registry")
        return mv.run_id
    return None


def evaluate_model(
    label: str, ref: str, items: Items, config: EvalConfig, version: str | None = None
) -> ModelEval:
    from workloads.evaluate.generate import open_generator

    started = time.perf_counter()
    api_key = os.environ.get(config.generation.endpoint_api_key_env)
    generator = open_generator(ref, config.generation, api_key=api_key)
    try:
        with tqdm(total=len(items.records), desc=f"eval {label}", unit="answer") as bar:
            gens = generator.generate([r["prompt"] for r in items.records], progress=bar.update)
    finally:
        generator.close()
    records = []
    for item, gen in zip(items.records, gens, strict=True):
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
        records.append(rec)
    return ModelEval(label, ref, version, records, {}, time.perf_counter() - started)


def _aggregate(model: ModelEval, splits: list[str]) -> None:
    model.aggregates = {
        split: aggregate_groups([r for r in model.records if r["split"] == split])
        for split in splits
        if any(r["split"] == split for r in model.records)
    }


def flatten_metrics(model: ModelEval, role: str) -> dict[str, float]:
    """MLflow metric keys: ``eval.<role>.<split>[.category.<c>|.difficulty.<d>].<metric>``."""
    out: dict[str, float] = {}
    for split, groups in model.aggregates.items():
        prefix = f"eval.{role}.{split}"
        for metric, value in groups["overall"].items():
            if value is not None:
                out[f"{prefix}.{metric}"] = float(value)
        for kind in ("category", "difficulty"):
            for key, row in groups[kind].items():
                safe = re.sub(r"[^A-Za-z0-9_-]", "_", str(key))
                for metric, value in row.items():
                    if value is not None:
                        out[f"{prefix}.{kind}.{safe}.{metric}"] = float(value)
    return out


def _log_to_mlflow(client: Any, result: EvalResult, config: EvalConfig) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metrics: dict[str, float] = {}
    for model in result.models:
        metrics.update(flatten_metrics(model, model.label))
    tags = {
        "tuneops.eval.benchmark_digest": result.benchmark_digest or "",
        "tuneops.eval.splits": ",".join(result.splits),
        "tuneops.eval.judge_prompt": result.judge_prompt or "",
        "tuneops.eval.primary_metric": config.report.primary_metric,
        "tuneops.eval.finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tuneops.eval.models": ",".join(m.label for m in result.models),
    }
    for model in result.models:
        tags[f"tuneops.eval.{model.label}.ref"] = model.ref
        tags[f"tuneops.eval.{model.label}.version"] = model.version or ""
    items = [Metric(k, v, now, 0) for k, v in sorted(metrics.items())]
    for start in range(0, len(items), 900):
        client.log_batch(result.run_id, metrics=items[start : start + 900])
    client.log_batch(result.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_artifacts(result.run_id, str(result.output_dir), artifact_path="eval")


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
    from tuneops.core.io import atomic_dir
    from workloads.evaluate.report import write_report

    baselines = dict(config.baselines if baselines is None else baselines)
    for label in baselines:
        if not _LABEL.match(label) or label == CANDIDATE:
            raise UserError(
                f"baseline label {label!r}: use letters, digits, - or _, and not 'candidate'"
            )
    client = _mlflow_client(config)
    items = load_items(config)
    notes = list(items.notes)
    run_id = candidate_run_id(client, model, run_id)
    cand_version = None
    if model.startswith("models:/"):
        mv = _model_version(client, model)
        cand_version = str(mv.version) if mv else None

    judge = None
    if config.judge.enabled:
        from workloads.evaluate.judge import Judge

        judge = Judge(config.judge)  # fail fast on a bad judge endpoint, before generating

    plan: list[tuple[str, str, str | None]] = [(CANDIDATE, model, cand_version)]
    for label, ref in baselines.items():
        version = None
        if ref.startswith("models:/"):
            mv = _model_version(client, ref)
            if mv is None:
                notes.append(f"baseline {label} skipped: {ref} does not exist yet")
                continue
            if run_id and mv.run_id == run_id:
                notes.append(f"baseline {label} skipped: {ref} is the candidate itself")
                continue
            version = str(mv.version)
        plan.append((label, ref, version))

    evals = []
    for label, ref, version in plan:
        evals.append(evaluate_model(label, ref, items, config, version))
    if judge is not None:
        try:
            for m in evals:
                with tqdm(total=len(m.records), desc=f"judge {m.label}", unit="answer") as bar:
                    grades = judge.grade(m.records, progress=bar.update)
                for rec, grade in zip(m.records, grades, strict=True):
                    rec["judge"] = grade
        finally:
            judge.close()
    splits = [s for s in config.splits if items.count(s)]
    for m in evals:
        _aggregate(m, splits)

    if log_to_mlflow and run_id is None:
        from tuneops.core.tracking import use_experiment

        experiment = use_experiment(config.tracking.experiment)
        name = f"eval-{re.sub(r'[^A-Za-z0-9_.-]+', '-', model)[-60:]}"
        run_id = client.create_run(experiment.experiment_id, run_name=name).info.run_id
        client.set_terminated(run_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = Path(
        output_dir
        or config.report.output_dir
        or cache_dir() / "eval" / f"{stamp}-{(run_id or 'local')[:12]}"
    )
    result = EvalResult(
        candidate=evals[0],
        baselines=evals[1:],
        notes=notes,
        output_dir=target,
        run_id=run_id or "",
        benchmark_digest=items.benchmark_digest,
        judge_prompt=judge.prompt.version if judge else None,
        splits=splits,
    )
    with atomic_dir(target) as tmp:
        write_report(result, config, tmp)
    if log_to_mlflow:
        _log_to_mlflow(client, result, config)
    return result
