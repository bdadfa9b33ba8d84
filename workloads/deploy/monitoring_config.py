"""Typed sections of the deploy config for watching a release on live signals:

- ``analysis``: how ``tuneops release analyze`` compares the canary with the stable version
  (Prometheus queries, window, thresholds, the ladder of canary weights);
- ``alerts``: the PrometheusRules for the model server and the training jobs;
- ``dashboards``: the Grafana dashboards, as ConfigMaps for the monitoring stack's sidecar.

Queries are PromQL with ``{namespace}``, ``{predictor}`` and ``{window}`` placeholders, filled
per InferenceService the way ``serving.autoscaling.metrics`` are (a literal brace is doubled).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from tuneops.core.config import StrictModel
from workloads.deploy.runtime_config import QUERY_FIELDS, check_placeholders

ANALYSIS_FIELDS = QUERY_FIELDS | {"window"}
# A Prometheus duration (the pattern of the Prometheus Operator's CRDs, without the bare 0).
DURATION = (
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)
SignalName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]


def _nonzero_duration(value: str) -> str:
    if not any(ch.isdigit() and ch != "0" for ch in value):
        raise ValueError("give a Prometheus duration such as 30s, 5m or 1h30m")
    return value


def fill(query: str, *, namespace: str, isvc: str, window: str) -> str:
    """The query for one InferenceService: ``{predictor}`` is the ``<isvc>-predictor`` prefix
    of its pods (KServe's Standard mode), ``{window}`` the range of its rate windows."""
    return query.format(namespace=namespace, predictor=f"{isvc}-predictor", window=window)


class Signal(StrictModel):
    """One live signal of a version, where lower is better (an error rate, a latency)."""

    query: str = Field(min_length=1)
    # How the value prints: ratio as a percentage, seconds with a unit.
    unit: Literal["ratio", "seconds"] = "seconds"
    # The canary fails above this value, whatever the stable version does.
    max: float | None = Field(None, ge=0)
    # The canary fails above this multiple of the stable version's value...
    max_ratio: float | None = Field(None, ge=1)
    # ...unless its value is at or below this floor (noise: 0.2% errors against 0% is no
    # reason to roll back).
    floor: float = Field(0.0, ge=0)

    @field_validator("query")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return check_placeholders(value, ANALYSIS_FIELDS)


class AnalysisConfig(StrictModel):
    """``tuneops release analyze``: canary against stable on live signals from Prometheus."""

    # The Prometheus HTTP API (``/api/v1/query`` under it).
    prometheus_url: str = Field(pattern=r"^https?://")
    # Environment variable holding a bearer token for Prometheus (null: send none).
    bearer_token_env: str | None = None
    timeout_s: float = Field(10.0, gt=0)
    # Tries per query when Prometheus is unreachable or answers 5xx.
    attempts: int = Field(3, ge=1, le=10)
    # The range every query looks back over (``{window}``).
    window: str = Field("10m", pattern=DURATION)
    # Canary weights a healthy canary steps through; past the last one it is promoted fully.
    steps: list[int] = Field(default_factory=lambda: [10, 25, 50], min_length=1)
    # Fewer canary requests than this in the window: the verdict is "wait", never "pass".
    min_requests: int = Field(100, ge=1)
    # Requests a version served in the window (``{window}`` placeholders and all).
    requests: str = Field(min_length=1)
    signals: dict[SignalName, Signal] = Field(min_length=1)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        return _nonzero_duration(value)

    @field_validator("requests")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return check_placeholders(value, ANALYSIS_FIELDS)

    @field_validator("steps")
    @classmethod
    def _ladder(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= s <= 99 for s in steps) or steps != sorted(set(steps)):
            raise ValueError("steps are canary percentages from 1 to 99, rising, each once")
        return steps


class AlertRule(StrictModel):
    """One alert on the model server, rendered for the stable and the canary InferenceService
    (when its query names ``{predictor}``): firing while the value stays above ``above``."""

    alert: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    # Either the name of an analysis signal (its query, over alerts.window) or a query.
    signal: str | None = None
    query: str | None = None
    above: float
    for_: str = Field("5m", alias="for", pattern=DURATION)
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> AlertRule:
        if (self.signal is None) == (self.query is None):
            raise ValueError(f"{self.alert}: give exactly one of signal or query")
        if self.query is not None:
            check_placeholders(self.query, ANALYSIS_FIELDS)
        return self


class TrainingAlerts(StrictModel):
    """Alerts on the Kubeflow TrainJobs' Jobs and pods, from kube-state-metrics (which
    kube-prometheus-stack installs): a failed job, one running too long, a pod left pending
    (no GPU capacity), a container killed for memory."""

    # Names of the Jobs and pods of the project's TrainJobs (``tuneops-train-<hash>``).
    job_pattern: str = "tuneops-train-.*"
    # A job still active after this many seconds (keep it under training.active_deadline_seconds
    # so someone hears of it before Kubernetes kills it).
    max_runtime_s: int = Field(5 * 3600, ge=60)
    # A pod pending this long: the cluster found no node for it.
    pending_for: str = Field("30m", pattern=DURATION)
    severity: Literal["info", "warning", "critical"] = "warning"


class AlertsConfig(StrictModel):
    # kube-prometheus-stack's Prometheus loads PrometheusRules labelled with its Helm release
    # name (the chart's prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues).
    rule_labels: dict[str, str] = Field(
        default_factory=lambda: {"release": "kube-prometheus-stack"}
    )
    # How often the rule groups are evaluated, and the range of the rate windows in their queries.
    evaluation_interval: str = Field("1m", pattern=DURATION)
    window: str = Field("5m", pattern=DURATION)
    serving: list[AlertRule] = Field(min_length=1)
    training: TrainingAlerts = Field(default_factory=TrainingAlerts)

    @field_validator("evaluation_interval", "window")
    @classmethod
    def _durations(cls, value: str) -> str:
        return _nonzero_duration(value)

    @field_validator("serving")
    @classmethod
    def _unique(cls, rules: list[AlertRule]) -> list[AlertRule]:
        names = [rule.alert for rule in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alert names {dupes} appear more than once")
        return rules


class DashboardsConfig(StrictModel):
    # kube-prometheus-stack's Grafana sidecar loads ConfigMaps with this label from every
    # namespace (grafana.sidecar.dashboards: label grafana_dashboard, labelValue "1",
    # searchNamespace ALL).
    labels: dict[str, str] = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    # The uid of the Prometheus datasource the chart provisions.
    datasource_uid: str = "prometheus"
    refresh: str = Field("30s", pattern=DURATION)
