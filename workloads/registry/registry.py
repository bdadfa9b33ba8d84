"""Register training runs as model versions, promote through the gate, roll back.

Aliases (names from config): every new version gets ``candidate``; ``promote`` moves
``champion`` to a version only when the gate (``workloads.registry.gate``) holds, and the
champion it replaces keeps ``previous``; ``rollback`` makes ``previous`` the champion again.
Each champion version records the one it replaced (tag ``tuneops.previous_champion``), so
repeated rollbacks walk back the history. ``promote`` and ``rollback`` read and move the
aliases while holding the promotion lock (``workloads.registry.lock``), writing a journaled plan
(``workloads.registry.journal``) that the next holder finishes if they die half way.

Scores come from the metrics that ``tuneops eval`` logs to a run:
``eval.<label>.<split>.<metric>`` for the candidate (label ``candidate``) and each baseline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.gitmeta import git_commit
from workloads.models.registry import run_logged_model
from workloads.registry.card import render_card
from workloads.registry.config import RegistryConfig
from workloads.registry.gate import GateDecision, GateRefusedError, evaluate_gate
from workloads.registry.journal import Plan, carry_out, promotion_lock
from workloads.registry.lock import RegistryLock
from workloads.registry.store import alias_version, client_for, get_run, mlflow_error, run_scores

log = logging.getLogger(__name__)

# Run tags (set by training) -> version tags.
RUN_TAGS = {
    "tuneops.dataset_snapshot": "dataset_snapshot",
    "tuneops.base_model": "base_model",
    "tuneops.method": "method",
    "mlflow.source.git.commit": "git_commit",
}


@dataclass
class Registration:
    name: str
    version: str
    source: str
    run_id: str
    card: str
    tags: dict[str, str]
    evaluated: bool


def _logged_model_source(client: Any, run: Any, artifact_path: str) -> tuple[str, str | None]:
    """The source URI of a run's model: its MLflow logged model if there is one, else the
    run's artifact folder (a plain HF directory logged as artifacts)."""
    model_id = run_logged_model(client, run, artifact_path)
    if model_id:
        return f"models:/{model_id}", model_id
    if not client.list_artifacts(run.info.run_id, artifact_path):
        raise UserError(
            f"run {run.info.run_id} has no model at {artifact_path!r}: train with `tuneops train` "
            "or log the merged model there (registry.model_artifact_path in config)"
        )
    return f"runs:/{run.info.run_id}/{artifact_path}", None


def _version_tags(config: RegistryConfig, run: Any) -> dict[str, str]:
    """Lineage (snapshot, base model, method, commit) and the eval scores, as version tags."""
    tags = {dst: run.data.tags[src] for src, dst in RUN_TAGS.items() if src in run.data.tags}
    if "git_commit" not in tags and (head := git_commit()):
        tags["git_commit"] = head  # the run did not record one: the code registering it
        tags["git_commit_source"] = "registry"
    split = config.gate.split
    for metric, value in run_scores(run, "candidate", split).items():
        tags[f"eval.{split}.{metric}"] = f"{value:.6g}"
    for metric, value in run_scores(run, config.gate.base_label, split).items():
        tags[f"eval.{config.gate.base_label}.{split}.{metric}"] = f"{value:.6g}"
    if digest := run.data.tags.get("tuneops.eval.benchmark_digest"):
        tags["eval.benchmark_digest"] = digest
    return tags


def register(config: RegistryConfig, run_id: str, *, client: Any = None) -> Registration:
    """Register the run's model as a new version with alias ``candidate`` and a model card."""
    client = client or client_for(config)
    run = get_run(client, run_id)
    source, model_id = _logged_model_source(client, run, config.model_artifact_path)
    try:
        client.get_registered_model(config.name)
    except mlflow_error():
        client.create_registered_model(
            config.name, description="Cloud-operations assistant fine-tuned by tuneops."
        )
    tags = _version_tags(config, run)
    kwargs = {"model_id": model_id} if model_id else {}
    mv = client.create_model_version(config.name, source, run_id=run_id, tags=tags, **kwargs)
    card = render_card(config, mv, run, source)
    client.update_model_version(config.name, mv.version, description=card)
    client.log_text(run_id, card, f"model_card/{config.name}-v{mv.version}.md")
    client.set_registered_model_alias(config.name, config.aliases.candidate, mv.version)
    evaluated = bool(run_scores(run, "candidate", config.gate.split))
    return Registration(config.name, str(mv.version), source, run_id, card, tags, evaluated)


def _refuse(client: Any, decision: GateDecision, lock: RegistryLock | None) -> GateRefusedError:
    """Record a refusal on the version (unless a dry run, ``lock`` None) and return the error."""
    name = decision.name
    if lock is not None:
        lock.check()
        client.set_model_version_tag(name, decision.version, "tuneops.gate", "refused")
        client.set_model_version_tag(
            name, decision.version, "tuneops.gate_reason", decision.reason()[:4000]
        )
    return GateRefusedError(
        f"promotion of {name} v{decision.version} refused: {decision.reason()}", decision
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _promotion_plan(config: RegistryConfig, decision: GateDecision) -> Plan:
    """The gate's record on the version first, then ``champion``, then ``previous`` (so the
    two name one version in between only when the version promoted was ``previous``)."""
    version, champion = decision.version, decision.champion
    plan = Plan(f"promote v{version}")
    plan.tags.append((version, "tuneops.gate", "passed"))
    if champion is not None:
        plan.tags.append((version, "tuneops.previous_champion", str(champion)))
    plan.tags.append((version, "tuneops.promoted_at", _now()))
    plan.aliases.append((config.aliases.champion, version))
    if champion is not None:
        plan.aliases.append((config.aliases.previous, str(champion)))
    return plan


def promote(
    config: RegistryConfig,
    version: str | None = None,
    *,
    dry_run: bool = False,
    break_lock: str | None = None,
    client: Any = None,
) -> GateDecision:
    """Move ``champion`` to the version when the gate holds; raise GateRefusedError if not.

    The gate is evaluated and the aliases moved under the promotion lock
    (``workloads.registry.lock``), so the champion it compares against is the one it replaces.
    A dry run reads only and takes no lock."""
    client = client or client_for(config)
    if dry_run:
        decision = evaluate_gate(config, version, client=client)
        if not (decision.passed or decision.already_champion):
            raise _refuse(client, decision, None)
        return decision
    target = f"v{version}" if version else f"@{config.aliases.candidate}"
    with promotion_lock(client, config, f"promote {target}", break_owner=break_lock) as lock:
        decision = evaluate_gate(config, version, client=client)
        if decision.already_champion:
            return decision
        if not decision.passed:
            raise _refuse(client, decision, lock)
        carry_out(client, config, lock, _promotion_plan(config, decision))
    return decision


@dataclass
class Rollback:
    name: str
    from_version: str
    to_version: str
    previous: str | None  # the alias ``previous`` after the rollback, if any


def _older_champion(client: Any, config: RegistryConfig, restored: str) -> str | None:
    """The champion before ``restored`` (its own ``tuneops.previous_champion``), if it still
    exists: where ``previous`` goes after a rollback to ``restored``."""
    older = client.get_model_version(config.name, restored).tags.get("tuneops.previous_champion")
    if not older:
        return None
    try:
        client.get_model_version(config.name, older)
    except mlflow_error():
        return None
    return older


def rollback(
    config: RegistryConfig, *, break_lock: str | None = None, client: Any = None
) -> Rollback:
    """Make the ``previous`` version champion again, in one step, under the promotion lock."""
    client = client or client_for(config)
    name, aliases = config.name, config.aliases
    with promotion_lock(client, config, "rollback", break_owner=break_lock) as lock:
        champion = alias_version(client, name, aliases.champion)
        previous = alias_version(client, name, aliases.previous)
        if previous is None:
            raise UserError(f"{name} has no {aliases.previous!r} version to roll back to")
        if champion is not None and champion.version == previous.version:
            raise UserError(f"{name}: {aliases.previous!r} is already the champion")
        older = _older_champion(client, config, previous.version)
        # ``previous`` steps back first, then ``champion`` moves (so the two name one version
        # in between only when the older champion is the one being demoted).
        plan = Plan(f"rollback to v{previous.version}")
        if champion is not None:
            plan.tags.append((champion.version, "tuneops.rolled_back_at", _now()))
        plan.aliases += [(aliases.previous, older), (aliases.champion, previous.version)]
        carry_out(client, config, lock, plan)
    return Rollback(name, champion.version if champion else "", previous.version, older)
