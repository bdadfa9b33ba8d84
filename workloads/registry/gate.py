"""The promotion gate: may a registered version become the champion?

Two rules, on the scores ``tuneops eval`` logged to the version's run (split ``gate.split``):
the primary metric beats the base model by ``min_gain_over_base``, and no metric in
``max_drop_vs_champion`` falls below the current champion by more than its tolerance. Missing
or incomparable scores refuse the promotion with the command to run, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneops.core.errors import UserError
from workloads.evaluate.metrics import higher_is_better
from workloads.models.refs import parse_ref, registry_uri
from workloads.models.registry import RegisteredVersion, lookup_version
from workloads.registry.config import RegistryConfig
from workloads.registry.store import alias_version, client_for, get_run, run_scores


class GateRefusedError(UserError):
    """The candidate did not pass the promotion gate; the message names every failed rule."""

    exit_code = 4

    def __init__(self, message: str, decision: GateDecision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


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


def _names_model(ref: str, name: str) -> bool:
    """True when ``ref`` is a registry reference to the model ``name`` (any alias or version)."""
    try:
        parsed = parse_ref(ref)
    except UserError:
        return False
    return parsed.is_registry and parsed.name == name


def _side_by_side(config: RegistryConfig, cand_run: Any, champion: str) -> dict[str, float]:
    """Scores of champion version ``champion`` from the candidate's own eval, if it ran it."""
    tags, split = cand_run.data.tags, config.gate.split
    for key, value in tags.items():
        parts = key.split(".")
        if len(parts) != 4 or parts[:2] != ["tuneops", "eval"] or parts[3] != "version":
            continue
        label = parts[2]
        ref = tags.get(f"tuneops.eval.{label}.ref", "")
        if label != "candidate" and value == champion and _names_model(ref, config.name):
            scores = run_scores(cand_run, label, split)
            if scores:
                return scores
    return {}


def _champion_scores(
    client: Any, config: RegistryConfig, cand_run: Any, champion: RegisteredVersion
) -> dict[str, float] | None:
    """Champion scores comparable with the candidate's: side by side from the candidate's own
    eval, else the champion's own eval on the same benchmark."""
    scores = _side_by_side(config, cand_run, champion.version)
    if scores:
        return scores
    if not champion.run_id:
        return None
    champ_run = client.get_run(champion.run_id)
    digest = cand_run.data.tags.get("tuneops.eval.benchmark_digest")
    if digest and champ_run.data.tags.get("tuneops.eval.benchmark_digest") == digest:
        return run_scores(champ_run, "candidate", config.gate.split) or None
    return None


def _gated_version(client: Any, config: RegistryConfig, version: str | None) -> RegisteredVersion:
    """The version to promote: ``version``, or the one with the candidate alias."""
    name = config.name
    if version is None:
        found = alias_version(client, name, config.aliases.candidate)
        if found is None:
            raise UserError(
                f"{name} has no {config.aliases.candidate!r} version: run `tuneops register`"
            )
        return found
    found = lookup_version(registry_uri(name, version=version), client=client)
    if found is None:
        raise UserError(f"{name} version {version} does not exist")
    return found


def _base_check(config: RegistryConfig, scores: dict[str, float], base: dict[str, float]) -> Check:
    gate, primary = config.gate, config.gate.primary_metric
    gain = -_worse_by(scores[primary], base[primary], primary) + 0.0  # no -0.0
    ok = gain >= gate.min_gain_over_base
    message = (
        f"{primary}: candidate {scores[primary]:.4f} vs {gate.base_label} "
        f"{base[primary]:.4f} is {gain:+.4f}, needs at least {gate.min_gain_over_base:+.4f}"
        + ("" if ok else f" (short by {gate.min_gain_over_base - gain:.4f})")
    )
    return Check(
        "base", primary, scores[primary], base[primary], gate.min_gain_over_base, ok, message
    )


def _champion_check(
    metric: str, tolerance: float, candidate: float, champion: float, version: str
) -> Check:
    drop = _worse_by(candidate, champion, metric)
    if drop > 0:
        direction = "below" if higher_is_better(metric) else "above"
        text = (
            f"{metric}: candidate {candidate:.4f} is {drop:.4f} {direction} champion "
            f"v{version} ({champion:.4f}); tolerance {tolerance:.4f}"
        )
    else:
        text = (
            f"{metric}: candidate {candidate:.4f} vs champion v{version} {champion:.4f} (not worse)"
        )
    return Check("champion", metric, candidate, champion, tolerance, drop <= tolerance, text)


def _champion_checks(
    decision: GateDecision, config: RegistryConfig, scores: dict[str, float], champ: dict
) -> None:
    version = decision.champion
    for metric, tolerance in config.gate.max_drop_vs_champion.items():
        if metric not in scores or metric not in champ:
            decision.problems.append(
                f"{metric}: missing for "
                + ("the candidate" if metric not in scores else f"champion v{version}")
            )
            continue
        decision.checks.append(
            _champion_check(metric, tolerance, scores[metric], champ[metric], str(version))
        )


def evaluate_gate(
    config: RegistryConfig, version: str | None = None, *, client: Any = None
) -> GateDecision:
    """Every rule of the gate for ``version`` (default: the candidate alias), nothing moved."""
    client = client or client_for(config)
    name, gate, split = config.name, config.gate, config.gate.split
    mv = _gated_version(client, config, version)
    champion = alias_version(client, name, config.aliases.champion)
    decision = GateDecision(name, mv.version, champion.version if champion else None)
    if champion is not None and champion.version == mv.version:
        decision.already_champion = True
        return decision
    run = get_run(client, mv.run_id or "")
    scores = run_scores(run, "candidate", split)
    hint = f"run `tuneops eval --model {registry_uri(name, version=mv.version)}`"
    if gate.primary_metric not in scores:
        decision.problems.append(
            f"version {mv.version} has no {split} {gate.primary_metric} score ({hint})"
        )
        return decision
    base = run_scores(run, gate.base_label, split)
    if gate.primary_metric in base:
        decision.checks.append(_base_check(config, scores, base))
    else:
        decision.problems.append(
            f"no {gate.base_label} model {gate.primary_metric} score in run {mv.run_id} "
            f"({hint} with the {gate.base_label} baseline)"
        )
    if champion is None:
        return decision
    champ_scores = _champion_scores(client, config, run, champion)
    if champ_scores is None:
        decision.problems.append(
            f"no scores comparable with champion v{champion.version}: {hint} (its default "
            "baselines include the champion)"
        )
        return decision
    _champion_checks(decision, config, scores, champ_scores)
    return decision
