"""PrometheusRules of an environment, rendered into ``monitoring/`` beside the manifests.

- **Serving** (``alerts.serving``): each rule is an analysis signal (``signal:``, the same
  query ``tuneops release analyze`` reads) or a query of its own, rendered once per
  InferenceService that may serve (stable and canary) with ``{predictor}`` filled in, and
  firing while its value stays above ``above`` for ``for``.
- **Training** (``alerts.training``): the Jobs and pods that Kubeflow Trainer creates for the
  project's TrainJobs, from kube-state-metrics (the training code exports no metrics of its
  own; it reports to MLflow): a failed job, one still running past ``max_runtime_s``, a pod
  pending past ``pending_for`` (no node for it), a container killed for memory.

kube-prometheus-stack's Prometheus loads the rules labelled ``alerts.rule_labels``.
"""

from __future__ import annotations

from typing import Any

from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import labels, predictor_names
from workloads.deploy.monitoring_config import AlertRule, fill

API_VERSION = "monitoring.coreos.com/v1"
SERVING_GROUP = "tuneops-serving"
TRAINING_GROUP = "tuneops-training"


def manifests(cfg: DeployConfig) -> dict[str, dict[str, Any]]:
    return {
        "monitoring/serving-rules.yaml": serving_rules(cfg),
        "monitoring/training-rules.yaml": training_rules(cfg),
    }


def roles(cfg: DeployConfig) -> list[tuple[str, str]]:
    """(InferenceService, role) of every version that may serve."""
    return list(zip(predictor_names(cfg), ("stable", "canary"), strict=True))


def _prometheus_rule(
    cfg: DeployConfig, name: str, namespace: str, group: str, rules: list[dict[str, Any]]
) -> dict[str, Any]:
    meta_labels = {**labels(cfg, "alerts"), **cfg.alerts.rule_labels}
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "spec": {
            "groups": [{"name": group, "interval": cfg.alerts.evaluation_interval, "rules": rules}]
        },
    }


def _alert(
    name: str,
    expr: str,
    *,
    for_: str | None,
    severity: str,
    labels: dict[str, str],
    summary: str,
    description: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "alert": name,
        "expr": expr,
        "labels": {"severity": severity, **labels},
        "annotations": {"summary": summary, "description": description},
    }
    if for_:
        rule["for"] = for_
    return rule


def rule_query(cfg: DeployConfig, rule: AlertRule) -> str:
    """The rule's query text, placeholders and all."""
    if rule.signal is not None:
        return cfg.analysis.signals[rule.signal].query
    assert rule.query is not None
    return rule.query


def serving_rules(cfg: DeployConfig) -> dict[str, Any]:
    alerts = cfg.alerts
    namespace = cfg.serving.namespace
    rules = []
    for rule in alerts.serving:
        query = rule_query(cfg, rule)
        targets = roles(cfg) if "{predictor}" in query else [(cfg.serving.name, "all")]
        for isvc, role in targets:
            expr = fill(query, namespace=namespace, isvc=isvc, window=alerts.window)
            where = f"{namespace}/{isvc}" if role != "all" else namespace
            rules.append(
                _alert(
                    rule.alert,
                    f"({expr}) > {rule.above:g}",
                    for_=rule.for_,
                    severity=rule.severity,
                    labels={"namespace": namespace, "inferenceservice": isvc, "role": role},
                    summary=f"{where}: {rule.summary}",
                    description=(
                        f"{rule.alert} on {where} ({role}): above {rule.above:g} for "
                        f"{rule.for_} (configs/deploy/{cfg.env}.yaml alerts.serving)."
                    ),
                )
            )
    name = f"{cfg.serving.name}-alerts"
    return _prometheus_rule(cfg, name, namespace, SERVING_GROUP, rules)


def training_rules(cfg: DeployConfig) -> dict[str, Any]:
    training = cfg.alerts.training
    ns = cfg.training.namespace
    jobs = f'namespace="{ns}", job_name=~"{training.job_pattern}"'
    pods = f'namespace="{ns}", pod=~"{training.job_pattern}"'
    hours = f"{training.max_runtime_s / 3600:g} h"
    common = {"severity": training.severity, "labels": {"area": "training"}}
    rules = [
        _alert(
            "TrainJobFailed",
            f'max by (namespace, job_name) (kube_job_failed{{{jobs}, condition="true"}}) == 1',
            for_=None,
            summary="{{ $labels.namespace }}/{{ $labels.job_name }}: a training job failed",
            description="The Job of a TrainJob reports the Failed condition; read its pods' "
            "logs (kubectl logs -n {{ $labels.namespace }} job/{{ $labels.job_name }}).",
            **common,
        ),
        _alert(
            "TrainJobRunningTooLong",
            f"max by (namespace, job_name) (time() - kube_job_status_start_time{{{jobs}}}) "
            f"> {training.max_runtime_s} and on (namespace, job_name) "
            f"max by (namespace, job_name) (kube_job_status_active{{{jobs}}}) > 0",
            for_=None,
            summary="{{ $labels.namespace }}/{{ $labels.job_name }}: a training job has run "
            f"for more than {hours}",
            description=f"Still active after {hours}; it may be stuck, or it will reach "
            "training.active_deadline_seconds and be killed.",
            **common,
        ),
        _alert(
            "TrainJobPodPending",
            f'max by (namespace, pod) (kube_pod_status_phase{{{pods}, phase="Pending"}}) == 1',
            for_=training.pending_for,
            summary="{{ $labels.namespace }}/{{ $labels.pod }}: a training pod has been "
            f"pending for {training.pending_for}",
            description="No node takes it: GPU capacity did not arrive (the GPU NodePool's "
            "limits, quota, or no instances of the type).",
            **common,
        ),
        _alert(
            "TrainJobOOMKilled",
            "max by (namespace, pod, container) "
            f'(kube_pod_container_status_terminated_reason{{{pods}, reason="OOMKilled"}}) == 1',
            for_=None,
            summary="{{ $labels.namespace }}/{{ $labels.pod }}: a training container was "
            "killed for memory",
            description="Raise training.resources_per_node memory or lower the batch size.",
            **common,
        ),
    ]
    return _prometheus_rule(cfg, "tuneops-training-alerts", ns, TRAINING_GROUP, rules)
