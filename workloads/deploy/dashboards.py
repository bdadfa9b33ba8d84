"""Grafana dashboards of an environment, one per area, as ConfigMaps in ``monitoring/``.

kube-prometheus-stack's Grafana sidecar loads every ConfigMap labelled ``dashboards.labels``
(``grafana_dashboard: "1"``) from every namespace (the chart's ``searchNamespace: ALL``), so
the dashboards need nothing installed beside them.

- **serving**: the requests and every analysis signal, then every query-based serving alert
  (queue, KV cache, scrape), each for the stable and the canary InferenceService side by side,
  from the same configured queries (``{window}`` becomes Grafana's ``$__rate_interval``);
- **training**: the TrainJobs' Jobs and pods from kube-state-metrics and cAdvisor.
"""

from __future__ import annotations

import json
from typing import Any

from workloads.deploy.alerts import roles
from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import labels
from workloads.deploy.monitoring_config import fill

SCHEMA_VERSION = 39
RATE_INTERVAL = "$__rate_interval"
# Grafana's units for the analysis signals' units.
UNITS = {"ratio": "percentunit", "seconds": "s", "count": "short"}


def manifests(cfg: DeployConfig) -> dict[str, dict[str, Any]]:
    return {
        "monitoring/serving-dashboard.yaml": _configmap(
            cfg, "serving", cfg.serving.namespace, serving_dashboard(cfg)
        ),
        "monitoring/training-dashboard.yaml": _configmap(
            cfg, "training", cfg.training.namespace, training_dashboard(cfg)
        ),
    }


def _configmap(cfg: DeployConfig, area: str, namespace: str, board: dict) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"tuneops-{area}-dashboard",
            "namespace": namespace,
            "labels": {**labels(cfg, "dashboard"), **cfg.dashboards.labels},
        },
        "data": {f"tuneops-{cfg.env}-{area}.json": json.dumps(board, indent=2, sort_keys=True)},
    }


def _datasource(cfg: DeployConfig) -> dict[str, str]:
    return {"type": "prometheus", "uid": cfg.dashboards.datasource_uid}


def _panel(cfg: DeployConfig, title: str, unit: str, targets: list[tuple[str, str]]) -> dict:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": _datasource(cfg),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def _board(cfg: DeployConfig, area: str, panels: list[dict]) -> dict[str, Any]:
    """The dashboard, two panels to a row."""
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
        panel["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "uid": f"tuneops-{cfg.env}-{area}",
        "title": f"tuneops {cfg.env}: {area}",
        "tags": ["tuneops", cfg.env, area],
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "refresh": cfg.dashboards.refresh,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": panels,
    }


def _per_version(cfg: DeployConfig, query: str) -> list[tuple[str, str]]:
    ns = cfg.serving.namespace
    return [
        (fill(query, namespace=ns, isvc=isvc, window=RATE_INTERVAL), role)
        for isvc, role in roles(cfg)
    ]


def serving_dashboard(cfg: DeployConfig) -> dict[str, Any]:
    analysis = cfg.analysis
    panels = [
        _panel(
            cfg, "requests per rate interval", UNITS["count"], _per_version(cfg, analysis.requests)
        )
    ]
    for name, signal in analysis.signals.items():
        panels.append(
            _panel(cfg, name.replace("_", " "), UNITS[signal.unit], _per_version(cfg, signal.query))
        )
    for rule in cfg.alerts.serving:
        if rule.query is not None:
            panels.append(_panel(cfg, rule.alert, "short", _per_version(cfg, rule.query)))
    return _board(cfg, "serving", panels)


# Panels of the training dashboard: (title, unit, [(query, legend)]). {jobs}, {pods} and
# {containers} are label matchers of the project's TrainJobs; {rate} is the rate window.
TRAINING_PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("active training jobs", "short", [("count(kube_job_status_active{{{jobs}}} > 0)", "active")]),
    (
        "finished training jobs",
        "short",
        [
            ('sum(kube_job_complete{{{jobs}, condition="true"}})', "complete"),
            ('sum(kube_job_failed{{{jobs}, condition="true"}})', "failed"),
        ],
    ),
    (
        "run time of active jobs",
        "s",
        [
            (
                "(time() - kube_job_status_start_time{{{jobs}}}) "
                "and on (namespace, job_name) (kube_job_status_active{{{jobs}}} > 0)",
                "{{{{job_name}}}}",
            )
        ],
    ),
    (
        "training pods by phase",
        "short",
        [("sum by (phase) (kube_pod_status_phase{{{pods}}})", "{{{{phase}}}}")],
    ),
    (
        "GPUs requested",
        "short",
        [
            (
                'sum(kube_pod_container_resource_requests{{{pods}, resource="nvidia_com_gpu"}})',
                "GPUs",
            )
        ],
    ),
    (
        "CPU used (cores)",
        "short",
        [
            (
                "sum by (pod) (rate(container_cpu_usage_seconds_total{{{containers}}}[{rate}]))",
                "{{{{pod}}}}",
            )
        ],
    ),
    (
        "memory working set",
        "bytes",
        [("sum by (pod) (container_memory_working_set_bytes{{{containers}}})", "{{{{pod}}}}")],
    ),
]


def training_queries(cfg: DeployConfig) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(title, unit, [(query, legend)]) of every panel of the training dashboard."""
    ns, pattern = cfg.training.namespace, cfg.alerts.training.job_pattern
    pods = f'namespace="{ns}", pod=~"{pattern}"'
    fields = {
        "jobs": f'namespace="{ns}", job_name=~"{pattern}"',
        "pods": pods,
        "containers": f'{pods}, container!=""',
        "rate": RATE_INTERVAL,
    }
    return [
        (title, unit, [(q.format(**fields), legend.format(**fields)) for q, legend in targets])
        for title, unit, targets in TRAINING_PANELS
    ]


def training_dashboard(cfg: DeployConfig) -> dict[str, Any]:
    panels = [_panel(cfg, title, unit, targets) for title, unit, targets in training_queries(cfg)]
    return _board(cfg, "training", panels)
