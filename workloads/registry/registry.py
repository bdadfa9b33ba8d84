"""Register training runs as model versions, gate promotions to champion, roll back.

Aliases (names from config): every new version gets ``candidate``; ``promote`` moves
``champion`` to a version only when the gate holds, and the champion it replaces keeps
``previous``; ``rollback`` makes ``previous`` the champion again. Each champion version records
the one it replaced (tag ``tuneops.previous_champion``), so repeated rollbacks walk back the
history.

Scores come from the metrics that ``tuneops eval`` logs to a run:
``eval.<label>.<split>.<metric>`` for the candidate (label ``candidate``) and each baseline.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT, default_tracking_uri
from workloads.evaluate.metrics import QUALITY_METRICS, higher_is_better
from workloads.registry.config import RegistryConfig

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
# Run tags (set by training) -> version tags.
RUN_TAGS = {
    "tuneops.dataset_snapshot": "dataset_snapshot",
    "tuneops.base_model": "base_model",
    "tuneops.method": "method",
    "mlflow.source.git.commit": "git_commit",
}
CARD_METRICS = (*QUALITY_METRICS, "empty_rate", "runaway_rate", "answer_tokens", "tokens_per_s")


class GateRefusedError(UserError):
    """The candidate did not pass the promotion gate; the message names every failed rule."""

    exit_code = 4


def client_for(config: RegistryConfig):
    import mlflow
    from mlflow import MlflowClient

    uri = config.tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


def _mlflow_error():
    from mlflow.exceptions import MlflowException

    return MlflowException


def _get_run(client: Any, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except _mlflow_error() as exc:
        raise UserError(f"MLflow run {run_id!r} not found at {client.tracking_uri}") from exc


def version_by_alias(client: Any, name: str, alias: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except _mlflow_error():
        return None


def run_scores(run: Any, label: str, split: str) -> dict[str, float]:
    """Overall eval metrics of one model (``label``) logged to ``run``."""
    prefix = f"eval.{label}.{split}."
    return {
        key[len(prefix) :]: value
        for key, value in run.data.metrics.items()
        if key.startswith(prefix) and "." not in key[len(prefix) :]
    }


def _git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _logged_model_source(client: Any, run: Any, artifact_path: str) -> tuple[str, str | None]:
    """The source URI of a run's model: its MLflow logged model if there is one, else the
    run's artifact folder (a plain HF directory logged as artifacts)."""
    import mlflow

    try:
        found = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}'",
            output_format="list",
        )
    except Exception as exc:  # older stores lack logged models; the artifact path still works
        log.debug("no logged-model search: %s", exc)
        found = []
    for model in found:
        if model.name == artifact_path:
            return f"models:/{model.model_id}", model.model_id
    if not client.list_artifacts(run.info.run_id, artifact_path):
        raise UserError(
            f"run {run.info.run_id} has no model at {artifact_path!r}: train with `tuneops train` "
            "or log the merged model there (registry.model_artifact_path in config)"
        )
    return f"runs:/{run.info.run_id}/{artifact_path}", None


def _fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "—"
    return (
        f"{value:.1f}"
        if metric in ("bleu", "chrf", "answer_tokens", "tokens_per_s")
        else (f"{value:.3f}")
    )


def render_card(config: RegistryConfig, version: Any, run: Any, source: str) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    split = config.gate.split
    scores = run_scores(run, "candidate", split)
    labels = [
        t.split(".")[2]
        for t in sorted(run.data.tags)
        if t.startswith("tuneops.eval.") and t.endswith(".ref") and t.count(".") == 3
    ]
    others = [label for label in labels if label != "candidate" and run_scores(run, label, split)]
    rows = []
    for metric in CARD_METRICS:
        if metric not in scores:
            continue
        row: dict[str, Any] = {
            "metric": metric,
            "value": _fmt(scores[metric], metric),
            "others": [],
        }
        for label in others:
            other = run_scores(run, label, split).get(metric)
            delta = "—" if other is None else f"{scores[metric] - other:+.3f}"
            row["others"].append({"value": _fmt(other, metric), "delta": delta})
        rows.append(row)
    params = dict(sorted(run.data.params.items()))
    data_params = {k: v for k, v in params.items() if k.startswith(("data.", "dataset"))}
    method_params = {k: v for k, v in params.items() if k not in data_params}
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
        git_commit=tags.get("mlflow.source.git.commit") or _git_head(),
        source=source,
        data_params=data_params,
        method_params=method_params,
        metrics=rows,
        others=others,
        split=split,
        benchmark_digest=tags.get("tuneops.eval.benchmark_digest"),
        limits=config.card_limits or ["No limits recorded in configs/registry/default.yaml."],
    )


@dataclass
class Registration:
    name: str
    version: str
    source: str
    run_id: str
    card: str
    tags: dict[str, str]
    evaluated: bool


def register(config: RegistryConfig, run_id: str, *, client: Any = None) -> Registration:
    """Register the run's model as a new version with alias ``candidate`` and a model card."""
    client = client or client_for(config)
    run = _get_run(client, run_id)
    source, model_id = _logged_model_source(client, run, config.model_artifact_path)
    try:
        client.get_registered_model(config.name)
    except _mlflow_error():
        client.create_registered_model(
            config.name, description="Cloud-operations assistant fine-tuned by tuneops."
        )
    tags = {dst: run.data.tags[src] for src, dst in RUN_TAGS.items() if src in run.data.tags}
    if "git_commit" not in tags and (head := _git_head()):
        tags["git_commit"] = head  # the run did not record one: the code registering it
        tags["git_commit_source"] = "registry"
    split = config.gate.split
    scores = run_scores(run, "candidate", split)
    for metric, value in scores.items():
        tags[f"eval.{split}.{metric}"] = f"{value:.6g}"
    for metric, value in run_scores(run, config.gate.base_label, split).items():
        tags[f"eval.{config.gate.base_label}.{split}.{metric}"] = f"{value:.6g}"
    if digest := run.data.tags.get("tuneops.eval.benchmark_digest"):
        tags["eval.benchmark_digest"] = digest
    kwargs = {"model_id": model_id} if model_id else {}
    mv = client.create_model_version(config.name, source, run_id=run_id, tags=tags, **kwargs)
    card = render_card(config, mv, run, source)
    client.update_model_version(config.name, mv.version, description=card)
    client.log_text(run_id, card, f"model_card/{config.name}-v{mv.version}.md")
    client.set_registered_model_alias(config.name, config.aliases.candidate, mv.version)
    return Registration(config.name, str(mv.version), source, run_id, card, tags, bool(scores))


# --------------------------------------------------------------------------------------------
# The gate


@dataclass
class Check:
    rule: str  # "base" or "champion"
    metric: str
    candidate: float | None
    other: float | None
    threshold: float
    passed: bool
    message: str


@dataclass
class GateDecision:
    name: str
    version: str
    champion: str | None
    checks: list[Check] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # missing scores and the like
    already_champion: bool = False

    @property
    def passed(self) -> bool:
        return not self.problems and all(c.passed for c in self.checks)

    def reason(self) -> str:
        failed = [c.message for c in self.checks if not c.passed]
        return "; ".join([*self.problems, *failed])


def _worse_by(candidate: float, other: float, metric: str) -> float:
    """How much worse the candidate is than ``other`` (negative: better)."""
    return other - candidate if higher_is_better(metric) else candidate - other


def _champion_scores(
    client: Any, config: RegistryConfig, cand_run: Any, champion: Any
) -> tuple[dict[str, float], str] | None:
    """Champion scores comparable with the candidate's: side by side from the candidate's own
    eval, else the champion's own eval on the same benchmark."""
    split = config.gate.split
    tags = cand_run.data.tags
    for key, value in tags.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["tuneops", "eval"] and parts[3] == "version":
            label = parts[2]
            ref = tags.get(f"tuneops.eval.{label}.ref", "")
            if (
                label != "candidate"
                and value == str(champion.version)
                and ref.startswith(f"models:/{config.name}")
            ):
                scores = run_scores(cand_run, label, split)
                if scores:
                    return scores, f"side by side in the candidate's eval ({label})"
    if not champion.run_id:
        return None
    champ_run = client.get_run(champion.run_id)
    digest = tags.get("tuneops.eval.benchmark_digest")
    if digest and champ_run.data.tags.get("tuneops.eval.benchmark_digest") == digest:
        scores = run_scores(champ_run, "candidate", split)
        if scores:
            return scores, "from the champion's own eval on the same benchmark"
    return None


def evaluate_gate(
    config: RegistryConfig, version: str | None = None, *, client: Any = None
) -> GateDecision:
    client = client or client_for(config)
    name, gate, split = config.name, config.gate, config.gate.split
    if version is None:
        mv = version_by_alias(client, name, config.aliases.candidate)
        if mv is None:
            raise UserError(
                f"{name} has no {config.aliases.candidate!r} version: run `tuneops register`"
            )
    else:
        try:
            mv = client.get_model_version(name, str(version))
        except _mlflow_error() as exc:
            raise UserError(f"{name} version {version} does not exist") from exc
    champion = version_by_alias(client, name, config.aliases.champion)
    decision = GateDecision(name, str(mv.version), str(champion.version) if champion else None)
    if champion is not None and str(champion.version) == str(mv.version):
        decision.already_champion = True
        return decision
    run = _get_run(client, mv.run_id)
    scores = run_scores(run, "candidate", split)
    hint = f"run `tuneops eval --model models:/{name}/{mv.version}`"
    primary = gate.primary_metric
    if primary not in scores:
        decision.problems.append(f"version {mv.version} has no {split} {primary} score ({hint})")
        return decision

    base = run_scores(run, gate.base_label, split)
    if primary not in base:
        decision.problems.append(
            f"no {gate.base_label} model {primary} score in run {mv.run_id} ({hint} with the "
            f"{gate.base_label} baseline)"
        )
    else:
        gain = -_worse_by(scores[primary], base[primary], primary) + 0.0  # no -0.0
        ok = gain >= gate.min_gain_over_base
        decision.checks.append(
            Check(
                "base",
                primary,
                scores[primary],
                base[primary],
                gate.min_gain_over_base,
                ok,
                f"{primary}: candidate {scores[primary]:.4f} vs {gate.base_label} "
                f"{base[primary]:.4f} is {gain:+.4f}, needs at least "
                f"{gate.min_gain_over_base:+.4f}"
                + ("" if ok else f" (short by {gate.min_gain_over_base - gain:.4f})"),
            )
        )

    if champion is not None:
        found = _champion_scores(client, config, run, champion)
        if found is None:
            decision.problems.append(
                f"no scores comparable with champion v{champion.version}: run `tuneops eval "
                f"--model models:/{name}/{mv.version}` (its default baselines include the "
                "champion)"
            )
            return decision
        champ_scores, _where = found
        for metric, tolerance in gate.max_drop_vs_champion.items():
            if metric not in scores or metric not in champ_scores:
                decision.problems.append(
                    f"{metric}: missing for "
                    + ("the candidate" if metric not in scores else f"champion v{champion.version}")
                )
                continue
            drop = _worse_by(scores[metric], champ_scores[metric], metric)
            ok = drop <= tolerance
            direction = "below" if higher_is_better(metric) else "above"
            if drop > 0:
                text = (
                    f"{metric}: candidate {scores[metric]:.4f} is {drop:.4f} {direction} champion "
                    f"v{champion.version} ({champ_scores[metric]:.4f}); tolerance {tolerance:.4f}"
                )
            else:
                text = (
                    f"{metric}: candidate {scores[metric]:.4f} vs champion v{champion.version} "
                    f"{champ_scores[metric]:.4f} (not worse)"
                )
            decision.checks.append(
                Check("champion", metric, scores[metric], champ_scores[metric], tolerance, ok, text)
            )
    return decision


def promote(
    config: RegistryConfig, version: str | None = None, *, dry_run: bool = False, client: Any = None
) -> GateDecision:
    """Move ``champion`` to the version when the gate holds; raise GateRefusedError if not."""
    client = client or client_for(config)
    decision = evaluate_gate(config, version, client=client)
    name, aliases = config.name, config.aliases
    if decision.already_champion:
        return decision
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if not decision.passed:
        if not dry_run:
            client.set_model_version_tag(name, decision.version, "tuneops.gate", "refused")
            client.set_model_version_tag(
                name, decision.version, "tuneops.gate_reason", decision.reason()[:4000]
            )
        raise GateRefusedError(
            f"promotion of {name} v{decision.version} refused: {decision.reason()}"
        )
    if dry_run:
        return decision
    if decision.champion is not None:
        client.set_registered_model_alias(name, aliases.previous, decision.champion)
        client.set_model_version_tag(
            name, decision.version, "tuneops.previous_champion", str(decision.champion)
        )
    client.set_registered_model_alias(name, aliases.champion, decision.version)
    client.set_model_version_tag(name, decision.version, "tuneops.gate", "passed")
    client.set_model_version_tag(name, decision.version, "tuneops.promoted_at", now)
    return decision


@dataclass
class Rollback:
    name: str
    from_version: str
    to_version: str
    previous: str | None  # the alias ``previous`` after the rollback, if any


def rollback(config: RegistryConfig, *, client: Any = None) -> Rollback:
    """Make the ``previous`` version champion again, in one step."""
    client = client or client_for(config)
    name, aliases = config.name, config.aliases
    champion = version_by_alias(client, name, aliases.champion)
    previous = version_by_alias(client, name, aliases.previous)
    if previous is None:
        raise UserError(f"{name} has no {aliases.previous!r} version to roll back to")
    if champion is not None and str(champion.version) == str(previous.version):
        raise UserError(f"{name}: {aliases.previous!r} is already the champion")
    client.set_registered_model_alias(name, aliases.champion, previous.version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if champion is not None:
        client.set_model_version_tag(name, champion.version, "tuneops.rolled_back_at", now)
    # Walk one step further back, so a second rollback goes to the champion before that.
    older = previous.tags.get("tuneops.previous_champion")
    new_previous = None
    if older:
        try:
            client.get_model_version(name, older)
            client.set_registered_model_alias(name, aliases.previous, older)
            new_previous = older
        except _mlflow_error():
            older = None
    if not older:
        client.delete_registered_model_alias(name, aliases.previous)
    return Rollback(
        name, str(champion.version) if champion else "", str(previous.version), new_previous
    )
