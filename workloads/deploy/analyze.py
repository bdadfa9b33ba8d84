"""Canary analysis: judge a running canary on live signals, then move the release.

``tuneops release analyze --env ENV`` reads the release state beside the rendered manifests
(``gitops.read_state``), asks Prometheus the configured queries (``analysis`` in
``configs/deploy/<env>.yaml``) once for the stable InferenceService and once for the canary,
and decides:

- **rollback** when a canary signal is above its ceiling, or above ``max_ratio`` times the
  stable version's (unless it is at or below the signal's noise floor);
- **wait** when the canary served fewer than ``min_requests`` requests in the window, or a
  signal has no data yet: nothing is judged and nothing changes;
- otherwise **step** the canary to the next weight of ``steps``, or **promote** it fully after
  the last one.

The change goes through the same GitOps render as ``tuneops release ...`` (validation, policy
gate, atomic write). Prometheus unreachable is an error that changes nothing: no data is never
a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tuneops.core.errors import UserError
from workloads.deploy import gitops
from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import canary_name
from workloads.deploy.monitoring_config import AnalysisConfig, Signal, fill
from workloads.deploy.prometheus import PrometheusClient
from workloads.deploy.release import Canary, ReleaseState

REQUESTS = "requests"


class Verdict(StrEnum):
    PROMOTE = "promote"
    STEP = "step"
    WAIT = "wait"
    ROLLBACK = "rollback"

    @property
    def exit_code(self) -> int:
        """What the command exits with: 0 promoted, 10 stepped, 11 waiting, 12 rolled back
        (errors: 2 bad config or state, 3 Prometheus unreachable)."""
        return {"promote": 0, "step": 10, "wait": 11, "rollback": 12}[self.value]


@dataclass
class Row:
    """One line of the analysis table."""

    name: str
    unit: str  # ratio, seconds or count
    stable: float | None
    canary: float | None
    ceiling: float | None = None
    max_ratio: float | None = None
    outcome: str = "pass"  # pass, fail, no data, low traffic
    reason: str = ""


@dataclass
class Analysis:
    env: str
    window: str
    canary: str
    percent: int
    verdict: Verdict
    rows: list[Row]
    reasons: list[str]
    next_percent: int | None = None
    written: gitops.RenderResult | None = None
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code


def next_step(steps: list[int], percent: int) -> int | None:
    """The next weight of the ladder above ``percent``; None past the last (promote)."""
    return min((s for s in steps if s > percent), default=None)


def measure(client: PrometheusClient, cfg: DeployConfig, isvc: str) -> dict[str, float | None]:
    """The requests and every signal of one InferenceService, over the window."""
    analysis = cfg.analysis
    queries = {REQUESTS: analysis.requests}
    queries.update({name: signal.query for name, signal in analysis.signals.items()})
    ns, window = cfg.serving.namespace, analysis.window
    return {
        name: client.value(fill(query, namespace=ns, isvc=isvc, window=window))
        for name, query in queries.items()
    }


def judge_signal(
    name: str, signal: Signal, stable: float | None, canary: float | None, *, compare: bool
) -> Row:
    """Ceiling, then ratio against stable (``compare``: stable served enough requests)."""
    row = Row(name, signal.unit, stable, canary, ceiling=signal.max, max_ratio=signal.max_ratio)
    if canary is None:
        row.outcome, row.reason = "no data", f"the canary has no {name} data yet"
        return row
    if signal.max is not None and canary > signal.max:
        row.outcome = "fail"
        row.reason = f"{name} {_fmt(canary, signal.unit)} is above the ceiling " + _fmt(
            signal.max, signal.unit
        )
        return row
    if signal.max_ratio is None or canary <= signal.floor or not compare or stable is None:
        return row
    if stable <= 0 or canary / stable > signal.max_ratio:
        row.outcome = "fail"
        row.reason = (
            f"{name} {_fmt(canary, signal.unit)} is over {signal.max_ratio:g}x the stable "
            f"version's {_fmt(stable, signal.unit)}"
        )
    return row


def decide(
    analysis: AnalysisConfig,
    stable: dict[str, float | None],
    canary: dict[str, float | None],
) -> tuple[Verdict | None, list[Row], list[str]]:
    """Judge the canary: ROLLBACK or WAIT with reasons, or None (healthy: step or promote)."""
    served, baseline = canary.get(REQUESTS), stable.get(REQUESTS)
    enough = served is not None and served >= analysis.min_requests
    compare = baseline is not None and baseline >= analysis.min_requests
    traffic = Row(REQUESTS, "count", baseline, served, outcome="pass" if enough else "low traffic")
    rows = [traffic]
    for name, signal in analysis.signals.items():
        rows.append(judge_signal(name, signal, stable[name], canary[name], compare=compare))
    if not enough:
        seen = "no" if served is None else f"{served:.0f}"
        reason = (
            f"the canary served {seen} requests in {analysis.window}, fewer than "
            f"analysis.min_requests ({analysis.min_requests})"
        )
        for row in rows[1:]:
            if row.outcome == "fail":
                row.outcome = "low traffic"
        return Verdict.WAIT, rows, [reason]
    failed = [row.reason for row in rows if row.outcome == "fail"]
    if failed:
        return Verdict.ROLLBACK, rows, failed
    missing = [row.reason for row in rows if row.outcome == "no data"]
    if missing:
        return Verdict.WAIT, rows, missing
    return None, rows, []


def _running_canary(cfg: DeployConfig, root: Path | None) -> tuple[ReleaseState, Canary]:
    if cfg.serving.mode != "standard":
        raise UserError(
            f"{cfg.env}: canary analysis compares two InferenceServices (serving.mode standard); "
            "knative mode keeps both versions in one"
        )
    state = gitops.read_state(cfg, root)
    if state is None:
        raise UserError(
            f"{cfg.env} has no rendered release yet: run `tuneops gitops render --env {cfg.env}`"
        )
    if state.canary is None:
        raise UserError(
            f"{cfg.env} runs no canary to analyze (start one with "
            f"`tuneops release promote --env {cfg.env} --canary N`)"
        )
    return state, state.canary


def analyze(
    cfg: DeployConfig,
    *,
    root: Path | None = None,
    dry_run: bool = False,
    policy: bool = True,
    client: PrometheusClient | None = None,
) -> Analysis:
    """Measure, judge and (unless ``dry_run``) write the next release state of ``cfg.env``."""
    state, canary = _running_canary(cfg, root)
    settings = cfg.analysis
    client = client or PrometheusClient.from_env(
        settings.prometheus_url,
        timeout_s=settings.timeout_s,
        attempts=settings.attempts,
        token_env=settings.bearer_token_env,
    )
    stable_values = measure(client, cfg, cfg.serving.name)
    canary_values = measure(client, cfg, canary_name(cfg))
    verdict, rows, reasons = decide(settings, stable_values, canary_values)
    following = next_step(settings.steps, canary.percent)
    if verdict is None:
        verdict = Verdict.STEP if following is not None else Verdict.PROMOTE
    result = Analysis(
        env=cfg.env,
        window=settings.window,
        canary=canary.model.label(),
        percent=canary.percent,
        verdict=verdict,
        rows=rows,
        reasons=reasons,
        next_percent=following if verdict is Verdict.STEP else None,
        dry_run=dry_run,
    )
    if not dry_run:
        result.written = _apply(cfg, state, result, root=root, policy=policy)
    return result


def _apply(
    cfg: DeployConfig, state: ReleaseState, result: Analysis, *, root: Path | None, policy: bool
) -> gitops.RenderResult | None:
    """Write the verdict through the GitOps render (nothing for WAIT)."""
    if result.verdict is Verdict.STEP:
        assert state.canary is not None and result.next_percent is not None
        stepped = ReleaseState(
            stable=state.stable,
            canary=Canary(model=state.canary.model, percent=result.next_percent),
            previous=state.previous,
        )
        return gitops.write_env(cfg, stepped, root=root, policy=policy)
    if result.verdict is Verdict.PROMOTE:
        return gitops.promote(cfg, model=None, canary=None, full=True, root=root, policy=policy)
    if result.verdict is Verdict.ROLLBACK:
        return gitops.rollback(cfg, root=root, policy=policy)
    return None


def summary(result: Analysis) -> str:
    """The one-line verdict."""
    head = f"analysis {result.env}: canary {result.canary} at {result.percent}%"
    if result.verdict is Verdict.WAIT:
        tail = f"waiting: {'; '.join(result.reasons)}; nothing changed"
    elif result.verdict is Verdict.ROLLBACK:
        tail = f"failing: {'; '.join(result.reasons)}; " + _done(result, "rolled back")
    elif result.verdict is Verdict.STEP:
        tail = f"healthy; {_done(result, f'stepped to {result.next_percent}%')}"
    else:
        tail = f"healthy at the last step; {_done(result, 'promoted to 100%')}"
    return f"{head}: {tail} (exit {result.exit_code})"


def _done(result: Analysis, what: str) -> str:
    return f"would be {what} (dry run: nothing written)" if result.dry_run else what


def format_value(value: float | None, unit: str) -> str:
    return "-" if value is None else _fmt(value, unit)


def _fmt(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "seconds":
        return f"{value:.3f} s"
    return f"{value:.0f}"
