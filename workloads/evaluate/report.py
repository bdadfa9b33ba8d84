"""The comparison report: Markdown tables, a bar chart, the worst answers, the raw answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneops.core.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from workloads.evaluate.config import EvalConfig
from workloads.evaluate.metrics import NEUTRAL, higher_is_better
from workloads.evaluate.results import EvalResult, ModelEval

# Metrics on a 0-100 scale; the chart divides them by 100 to share an axis with the rest.
PERCENT_SCALE = frozenset({"bleu", "chrf"})
ONE_DECIMAL = PERCENT_SCALE | {"answer_tokens", "answer_chars", "tokens_per_s"}
LABELS = {
    "key_fact_recall": "key-fact recall",
    "rouge_l": "ROUGE-L",
    "bleu": "BLEU",
    "chrf": "chrF",
    "exact_match": "exact match",
    "judge_grade": "judge grade (1-5)",
    "judge_unparsed_rate": "judge unparsed",
    "empty_rate": "empty rate",
    "runaway_rate": "runaway rate",
    "answer_tokens": "answer tokens",
    "answer_chars": "answer chars",
    "latency_p50_s": "latency p50 (s)",
    "latency_p95_s": "latency p95 (s)",
    "tokens_per_s": "tokens/s",
    "count": "answers",
}


def fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "—"
    if metric in ONE_DECIMAL:
        return f"{value:.1f}"
    if metric == "count":
        return f"{int(value)}"
    return f"{value:.3f}"


def fmt_delta(a: Any, b: Any, metric: str) -> str:
    if a is None or b is None:
        return "—"
    delta = a - b
    text = f"{delta:+.1f}" if metric in ONE_DECIMAL else f"{delta:+.3f}"
    # No arrow for a difference that rounds to zero (float noise such as 1e-17 included).
    if metric in NEUTRAL or float(text) == 0:
        return text
    better = delta > 0 if higher_is_better(metric) else delta < 0
    return f"{text} ▲" if better else f"{text} ▼"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_rows(
    result: EvalResult, split: str, metrics: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Rows: metric | each model | Δ candidate vs each baseline."""
    cand = result.candidate.overall(split)
    header = ["metric", *[m.label for m in result.models]]
    header += [f"Δ vs {b.label}" for b in result.baselines]
    rows = []
    for metric in ["count", *metrics]:
        values = [m.overall(split).get(metric) for m in result.models]
        if all(v is None for v in values):
            continue
        row = [LABELS.get(metric, metric), *[fmt(v, metric) for v in values]]
        if metric == "count":
            row += ["" for _ in result.baselines]
        else:
            row += [
                fmt_delta(cand.get(metric), b.overall(split).get(metric), metric)
                for b in result.baselines
            ]
        rows.append(row)
    return header, rows


def comparison_table(result: EvalResult, split: str, metrics: list[str]) -> str:
    return _md_table(*comparison_rows(result, split, metrics))


def group_table(result: EvalResult, split: str, kind: str, metric: str) -> str:
    """Per category (or difficulty): the metric for every model and the candidate's deltas."""
    cand = result.candidate.aggregates.get(split, {}).get(kind, {})
    if not cand:
        return ""
    header = [kind, "n", *[m.label for m in result.models]]
    header += [f"Δ vs {b.label}" for b in result.baselines]
    rows = []
    for key, row in cand.items():
        values = [m.aggregates.get(split, {}).get(kind, {}).get(key, {}) for m in result.models]
        line = [str(key), fmt(row.get("count"), "count")]
        line += [fmt(v.get(metric), metric) for v in values]
        line += [fmt_delta(row.get(metric), v.get(metric), metric) for v in values[1:]]
        rows.append(line)
    return _md_table(header, rows)


def worst_answers(model: ModelEval, split: str, metric: str, n: int) -> list[dict[str, Any]]:
    records = [r for r in model.records if r["split"] == split]

    def key(r: dict[str, Any]) -> tuple[float, float]:
        primary = r["metrics"].get(metric)
        if primary is None:
            primary = r.get("judge", {}).get("grade") if r.get("judge") else None
        return (primary if primary is not None else 0.0, r["metrics"]["rouge_l"])

    return sorted(records, key=key)[:n]


def _quote(text: str) -> str:
    text = text.strip() or "(empty)"
    return "\n".join("> " + line for line in text.splitlines())


def _precision(m: ModelEval) -> str:
    if m.dtype is None:
        return "chosen by the endpoint"
    return f"{m.dtype} ({m.precision_reason})" if m.precision_reason else m.dtype


def precision_text(models: list[ModelEval]) -> str:
    """The dtype the answers were computed in and why: ``float32 (why)`` when every model
    shares it, else ``candidate, base: float32 (why); champion: bfloat16 (why)``."""
    groups: dict[str, list[str]] = {}
    for m in models:
        groups.setdefault(_precision(m), []).append(m.label)
    if len(groups) == 1:
        return next(iter(groups))
    return "; ".join(f"{', '.join(labels)}: {text}" for text, labels in groups.items())


def _model_line(m: ModelEval) -> str:
    return f"- {m.label}: `{m.ref}`" + (f" (version {m.version})" if m.version else "")


def _header(result: EvalResult, config: EvalConfig) -> list[str]:
    gen = config.generation
    out = [
        f"# Evaluation: {result.candidate.ref}",
        "",
        f"- MLflow run: `{result.run_id or 'not logged'}`",
        *[_model_line(m) for m in result.models],
        f"- benchmark digest: `{result.benchmark_digest or '—'}`",
        f"- decoding: greedy, max_new_tokens={gen.max_new_tokens}, "
        f"batch_size={gen.batch_size}, dtype={gen.dtype}",
        f"- precision: {precision_text(result.models)}",
        f"- system prompt: {result.system_prompt!r}",
        f"- judge: {result.judge_prompt or 'off'}",
        f"- primary metric: {config.report.primary_metric}",
    ]
    if result.notes:
        out += ["", "Notes:", *[f"- {n}" for n in result.notes]]
    return out


def _split_section(result: EvalResult, config: EvalConfig, split: str) -> list[str]:
    primary = config.report.primary_metric
    out = ["", f"## {split}", "", comparison_table(result, split, config.report.table_metrics)]
    for kind in ("category", "difficulty"):
        for metric in dict.fromkeys([primary, "rouge_l"]):
            table = group_table(result, split, kind, metric)
            if table:
                out += ["", f"### {LABELS.get(metric, metric)} per {kind}", "", table]
    return out


def _worst_answer(n: int, rec: dict[str, Any], primary: str) -> list[str]:
    missing = [
        f for f, ok in zip(rec["key_facts"], rec["metrics"]["facts_found"], strict=True) if not ok
    ]
    scores = ", ".join(f"{k}={fmt(rec['metrics'].get(k), k)}" for k in (primary, "rouge_l", "chrf"))
    out = [
        "",
        f"### {n}. `{rec['id']}` ({rec.get('category') or '—'}, "
        f"{rec.get('difficulty') or '—'}): {scores}",
        "",
        "**Question**",
        "",
        _quote(rec["question"]),
        "",
        "**Reference**",
        "",
        _quote(rec["reference"]),
        "",
        "**Candidate**" + ("" if rec["finished"] else " (no end-of-turn: runaway)"),
        "",
        _quote(rec["answer"]),
    ]
    if missing:
        out += ["", "Missing key facts: " + "; ".join(f"`{f}`" for f in missing)]
    return out


def render_markdown(result: EvalResult, config: EvalConfig, chart: str | None) -> str:
    primary = config.report.primary_metric
    out = _header(result, config)
    for split in result.splits:
        out += _split_section(result, config, split)
    if chart:
        out += ["", "## Chart", "", f"![comparison]({chart})"]
    if config.report.worst_n and result.splits:
        split = result.splits[0]
        worst = worst_answers(result.candidate, split, primary, config.report.worst_n)
        out += ["", f"## The {len(worst)} worst candidate answers ({split}, by {primary})"]
        for n, rec in enumerate(worst, 1):
            out += _worst_answer(n, rec, primary)
    return "\n".join(out) + "\n"


def write_chart(result: EvalResult, config: EvalConfig, path: Path) -> bool:
    """Grouped bars: overall metrics per model, and the primary metric per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    split = result.splits[0] if result.splits else None
    if split is None:
        return False
    primary = config.report.primary_metric
    metrics = [
        m
        for m in config.report.chart_metrics
        if any(x.overall(split).get(m) is not None for x in result.models)
    ]
    categories = list(result.candidate.aggregates[split]["category"])
    panels = 2 if categories else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    width = 0.8 / max(len(result.models), 1)

    ax = axes[0][0]
    x = np.arange(len(metrics))
    for i, model in enumerate(result.models):
        vals = []
        for metric in metrics:
            v = model.overall(split).get(metric) or 0.0
            vals.append(v / 100 if metric in PERCENT_SCALE else v)
        ax.bar(x + i * width, vals, width, label=model.label)
    names = [LABELS.get(m, m) + (" /100" if m in PERCENT_SCALE else "") for m in metrics]
    ax.set_xticks(x + width * (len(result.models) - 1) / 2, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(f"{split}: overall")
    ax.legend()

    if categories:
        ax = axes[0][1]
        x = np.arange(len(categories))
        for i, model in enumerate(result.models):
            groups = model.aggregates.get(split, {}).get("category", {})
            vals = [(groups.get(c, {}).get(primary) or 0.0) for c in categories]
            ax.bar(x + i * width, vals, width, label=model.label)
        ax.set_xticks(x + width * (len(result.models) - 1) / 2, categories, rotation=20)
        ax.set_title(f"{split}: {LABELS.get(primary, primary)} per category")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def summary(result: EvalResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "benchmark_digest": result.benchmark_digest,
        "judge_prompt": result.judge_prompt,
        "splits": result.splits,
        "notes": result.notes,
        "models": {
            m.label: {
                "ref": m.ref,
                "version": m.version,
                "dtype": m.dtype,
                "precision_reason": m.precision_reason,
                "seconds": round(m.seconds, 2),
                "aggregates": m.aggregates,
            }
            for m in result.models
        },
    }


def write_report(result: EvalResult, config: EvalConfig, directory: Path) -> None:
    chart = "comparison.png" if write_chart(result, config, directory / "comparison.png") else None
    atomic_write_text(directory / "report.md", render_markdown(result, config, chart))
    atomic_write_json(directory / "summary.json", summary(result))
    atomic_write_text(directory / "config.json", json.dumps(config.model_dump(), indent=2) + "\n")
    for model in result.models:
        atomic_write_jsonl(directory / "answers" / f"{model.label}.jsonl", model.records)


def summary_line(result: EvalResult, config: EvalConfig) -> str:
    primary = config.report.primary_metric
    split = result.splits[0]
    cand = result.candidate.overall(split)
    parts = [f"{primary} {fmt(cand.get(primary), primary)}", f"ROUGE-L {fmt(cand.get('rouge_l'))}"]
    for b in result.baselines:
        parts.append(
            f"vs {b.label} {fmt_delta(cand.get(primary), b.overall(split).get(primary), primary)}"
        )
    answers = sum(len(m.records) for m in result.models)
    seconds = sum(m.seconds for m in result.models)
    return (
        f"eval: candidate on {split}: "
        + ", ".join(parts)
        + f" ({answers} answers from {len(result.models)} models in {seconds:.0f} s)"
        + f"; precision {precision_text(result.models)}"
        + f"; report {result.output_dir / 'report.md'}"
    )
