"""The model card of a registered version: data, method, metrics beside each baseline, limits.

Rendered from ``templates/model_card.md.jinja``; it becomes the version's description in the
registry and is logged to the run as ``model_card/<name>-v<N>.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneops.core.gitmeta import git_commit
from workloads.evaluate.metrics import QUALITY_METRICS
from workloads.registry.config import RegistryConfig
from workloads.registry.store import run_scores

TEMPLATES = Path(__file__).parent / "templates"
CARD_METRICS = (*QUALITY_METRICS, "empty_rate", "runaway_rate", "answer_tokens", "tokens_per_s")
ONE_DECIMAL = ("bleu", "chrf", "answer_tokens", "tokens_per_s")


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if metric in ONE_DECIMAL else f"{value:.3f}"


def evaluated_labels(run: Any) -> list[str]:
    """Labels of the models the run's eval compared (``tuneops.eval.<label>.ref`` tags)."""
    return [
        t.split(".")[2]
        for t in sorted(run.data.tags)
        if t.startswith("tuneops.eval.") and t.endswith(".ref") and t.count(".") == 3
    ]


def metric_rows(run: Any, split: str, others: list[str]) -> list[dict[str, Any]]:
    """The candidate's scores, each beside every other model's and the difference."""
    scores = run_scores(run, "candidate", split)
    rows = []
    for metric in CARD_METRICS:
        if metric not in scores:
            continue
        row: dict[str, Any] = {"metric": metric, "value": _fmt(scores[metric], metric)}
        row["others"] = []
        for label in others:
            other = run_scores(run, label, split).get(metric)
            delta = "—" if other is None else f"{scores[metric] - other:+.3f}"
            row["others"].append({"value": _fmt(other, metric), "delta": delta})
        rows.append(row)
    return rows


def render_card(config: RegistryConfig, version: Any, run: Any, source: str) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    split = config.gate.split
    others = [
        label
        for label in evaluated_labels(run)
        if label != "candidate" and run_scores(run, label, split)
    ]
    params = dict(sorted(run.data.params.items()))
    data_params = {k: v for k, v in params.items() if k.startswith(("data.", "dataset"))}
    tags = run.data.tags
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, keep_trailing_newline=True
    )
    return env.get_template("model_card.md.jinja").render(
        name=config.name,
        version=version.version,
        run_id=run.info.run_id,
        registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
        base_model=tags.get("tuneops.base_model"),
        method=tags.get("tuneops.method"),
        dataset_snapshot=tags.get("tuneops.dataset_snapshot"),
        git_commit=tags.get("mlflow.source.git.commit") or git_commit(),
        source=source,
        data_params=data_params,
        method_params={k: v for k, v in params.items() if k not in data_params},
        metrics=metric_rows(run, split, others),
        others=others,
        split=split,
        benchmark_digest=tags.get("tuneops.eval.benchmark_digest"),
        limits=config.card_limits or ["No limits recorded in configs/registry/default.yaml."],
    )
