"""The rendered PrometheusRules, checked and unit-tested with the real ``promtool``: each alert
fires for the version (stable or canary) whose series cross its threshold and for no other;
a planted broken rule fails; every dashboard query is valid PromQL; the dashboards and rules
land in the environment's GitOps tree, labelled for the monitoring stack."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from workloads.deploy import alerts, dashboards, gitops
from workloads.deploy.config import load_deploy_config
from workloads.deploy.validate import validate_manifest

NS = "tuneops"
STABLE_POD = "cloudops-assistant-predictor-5d8f7-abcde"
CANARY_POD = "cloudops-assistant-canary-predictor-7c9b4-xyz12"


@pytest.fixture(scope="module")
def promtool(prometheus_bin) -> Path:
    return prometheus_bin / "promtool"


def _series(metric: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    pairs = {"namespace": NS, "pod": pod, **labels}
    body = ", ".join(f'{k}="{v}"' for k, v in pairs.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def _expand(text: str, labels: dict[str, str]) -> str:
    """Prometheus's expansion of ``{{ $labels.x }}`` in an annotation."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)


def _expected(manifest: dict, firing: dict[str, list[dict[str, str]]]) -> list[dict]:
    """promtool's alert_rule_test entries: for every alert of the manifest, the alerts that
    must fire, with the labels the query gives them (``firing``) and the rule's own."""
    by_name: dict[str, list[dict]] = {}
    for rule in manifest["spec"]["groups"][0]["rules"]:
        by_name.setdefault(rule["alert"], []).append(rule)
    tests = []
    for name, rules in sorted(by_name.items()):
        exp = []
        for rule in rules:
            for query_labels in firing.get(name, []):
                role = query_labels.get("role")  # serving: which version's rule fires
                if role is not None and rule["labels"]["role"] != role:
                    continue
                lbls = {**{k: v for k, v in query_labels.items() if k != "role"}, **rule["labels"]}
                notes = {k: _expand(v, lbls) for k, v in rule["annotations"].items()}
                exp.append({"exp_labels": lbls, "exp_annotations": notes})
        tests.append({"alertname": name, "exp_alerts": exp})
    return tests


def _promtool_test(
    promtool: Path,
    tmp_path: Path,
    manifest: dict,
    series: list[dict],
    expected: list[dict],
    *,
    interval: str,
    eval_time: str,
) -> subprocess.CompletedProcess:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}), encoding="utf-8")
    checks = [dict(entry, eval_time=eval_time) for entry in expected]
    suite = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [{"interval": interval, "input_series": series, "alert_rule_test": checks}],
    }
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    check = subprocess.run(
        [str(promtool), "check", "rules", rules.name], cwd=tmp_path, capture_output=True, text=True
    )
    if check.returncode != 0:
        return check
    return subprocess.run(
        [str(promtool), "test", "rules", test_file.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )


def _project_series() -> list[dict]:
    """dev's project server: the stable fails 6 of every 66 requests and its queue is near
    full; the canary is slow and cannot be scraped."""
    chat = {"route": "/openai/v1/chat/completions"}
    return [
        _series("tuneops_serve_requests_total", STABLE_POD, "0+60x30", status="200", **chat),
        _series("tuneops_serve_requests_total", STABLE_POD, "0+6x30", status="500", **chat),
        _series(
            "tuneops_serve_requests_total", STABLE_POD, "0+60x30", status="200", route="/metrics"
        ),
        _series("tuneops_serve_requests_total", CANARY_POD, "0+60x30", status="200", **chat),
        _series(
            "tuneops_serve_request_latency_seconds_bucket", STABLE_POD, "0+10x30", le="0.5", **chat
        ),
        _series(
            "tuneops_serve_request_latency_seconds_bucket", STABLE_POD, "0+10x30", le="+Inf", **chat
        ),
        _series(
            "tuneops_serve_request_latency_seconds_bucket", CANARY_POD, "0x30", le="30", **chat
        ),
        _series(
            "tuneops_serve_request_latency_seconds_bucket", CANARY_POD, "0+10x30", le="60", **chat
        ),
        _series(
            "tuneops_serve_request_latency_seconds_bucket", CANARY_POD, "0+10x30", le="+Inf", **chat
        ),
        _series("tuneops_serve_queue_depth", STABLE_POD, "200x30"),
        _series("tuneops_serve_queue_depth", CANARY_POD, "3x30"),
        _series("up", STABLE_POD, "1x30"),
        _series("up", CANARY_POD, "0x30"),
    ]


def _vllm_series() -> list[dict]:
    """staging's vLLM: the canary ends a third of its requests in an engine error, its first
    tokens come late and its KV cache is full; the stable's queue is long."""
    vllm = {"model_name": "cloudops-assistant", "engine": "0"}
    success = "vllm:request_success_total"
    ttft = "vllm:time_to_first_token_seconds_bucket"
    return [
        _series(success, STABLE_POD, "0+60x30", finished_reason="stop", **vllm),
        _series(success, STABLE_POD, "0x30", finished_reason="error", **vllm),
        _series(success, CANARY_POD, "0+60x30", finished_reason="stop", **vllm),
        _series(success, CANARY_POD, "0+30x30", finished_reason="error", **vllm),
        _series(ttft, STABLE_POD, "0+10x30", le="0.1", **vllm),
        _series(ttft, STABLE_POD, "0+10x30", le="+Inf", **vllm),
        _series(ttft, CANARY_POD, "0x30", le="2.5", **vllm),
        _series(ttft, CANARY_POD, "0+10x30", le="5.0", **vllm),
        _series(ttft, CANARY_POD, "0+10x30", le="+Inf", **vllm),
        _series("vllm:num_requests_waiting", STABLE_POD, "100x30", **vllm),
        _series("vllm:kv_cache_usage_perc", STABLE_POD, "0.5x30", **vllm),
        _series("vllm:kv_cache_usage_perc", CANARY_POD, "0.99x30", **vllm),
        _series("up", STABLE_POD, "1x30"),
        _series("up", CANARY_POD, "1x30"),
    ]


STABLE, CANARY = {"role": "stable"}, {"role": "canary"}
SERVING_CASES = {
    "dev": (
        _project_series,
        {
            "ModelServerErrorRate": [STABLE],
            "ModelServerLatencyHigh": [CANARY],
            "ModelServerQueueSaturated": [STABLE],
            "ModelServerScrapeFailing": [CANARY],
        },
    ),
    "staging": (
        _vllm_series,
        {
            "ModelServerErrorRate": [CANARY],
            "ModelServerTimeToFirstTokenHigh": [CANARY],
            "ModelServerQueueSaturated": [STABLE],
            "ModelServerKVCacheFull": [CANARY],
        },
    ),
}


@pytest.mark.parametrize("env", sorted(SERVING_CASES))
def test_serving_alerts_fire_for_the_version_that_crosses_them(promtool, tmp_path, env):
    cfg = load_deploy_config(env)
    manifest = alerts.serving_rules(cfg)
    assert validate_manifest(manifest, f"{env}/serving-rules", cfg.kubernetes_version).startswith(
        "CRD schema"
    )
    make_series, firing = SERVING_CASES[env]
    names = {rule.alert for rule in cfg.alerts.serving}
    assert set(firing) < names, "some alerts must stay quiet in the test"
    expected = _expected(manifest, firing)
    done = _promtool_test(
        promtool, tmp_path, manifest, make_series(), expected, interval="1m", eval_time="15m"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _training_series() -> list[dict]:
    """One failed job, one running for 6.5 h and one started 15 min ago, a pending pod, an
    OOM-killed container; and a failed job that is not the project's."""
    ksm = {"job": "kube-state-metrics"}
    old, new = "tuneops-train-1a2b3c-node-0", "tuneops-train-4d5e6f-node-0"
    pod = "tuneops-train-7a8b9c-node-0-0-x2k4p"

    def job(metric: str, name: str, values: str, **labels: str) -> dict:
        body = ", ".join(
            f'{k}="{v}"' for k, v in {"namespace": NS, "job_name": name, **labels, **ksm}.items()
        )
        return {"series": f"{metric}{{{body}}}", "values": values}

    return [
        job("kube_job_failed", "tuneops-train-ffff00-node-0", "1x80", condition="true"),
        job("kube_job_failed", "tuneops-train-ffff00-node-0", "0x80", condition="false"),
        job("kube_job_failed", "someone-elses-job", "1x80", condition="true"),
        job("kube_job_status_start_time", old, "0x80"),
        job("kube_job_status_active", old, "1x80"),
        job("kube_job_status_start_time", new, "22500x80"),
        job("kube_job_status_active", new, "1x80"),
        _series("kube_pod_status_phase", pod, "1x80", phase="Pending", **ksm),
        _series("kube_pod_status_phase", pod, "0x80", phase="Running", **ksm),
        _series(
            "kube_pod_container_status_terminated_reason",
            pod,
            "1x80",
            container="node",
            reason="OOMKilled",
            **ksm,
        ),
    ]


def test_training_alerts_fire_on_kube_state_metrics(promtool, tmp_path):
    cfg = load_deploy_config("prod")
    manifest = alerts.training_rules(cfg)
    validate_manifest(manifest, "prod/training-rules", cfg.kubernetes_version)
    pod = "tuneops-train-7a8b9c-node-0-0-x2k4p"
    firing = {
        "TrainJobFailed": [{"namespace": NS, "job_name": "tuneops-train-ffff00-node-0"}],
        "TrainJobRunningTooLong": [{"namespace": NS, "job_name": "tuneops-train-1a2b3c-node-0"}],
        "TrainJobPodPending": [{"namespace": NS, "pod": pod}],
        "TrainJobOOMKilled": [{"namespace": NS, "pod": pod, "container": "node"}],
    }
    expected = _expected(manifest, firing)
    done = _promtool_test(
        promtool, tmp_path, manifest, _training_series(), expected, interval="5m", eval_time="390m"
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _planted(manifest: dict, alert: str, change) -> dict:
    broken = json.loads(json.dumps(manifest))
    for rule in broken["spec"]["groups"][0]["rules"]:
        if rule["alert"] == alert:
            rule["expr"] = change(rule["expr"])
    return broken


def test_a_planted_broken_rule_fails(promtool, tmp_path):
    cfg = load_deploy_config("dev")
    manifest = alerts.serving_rules(cfg)
    firing = SERVING_CASES["dev"][1]
    series = _project_series()
    # A typo in a metric name: still valid PromQL, so only the unit test can catch it.
    typo = _planted(
        manifest, "ModelServerErrorRate", lambda e: e.replace("requests_total", "request_total")
    )
    done = _promtool_test(
        promtool, tmp_path, typo, series, _expected(typo, firing), interval="1m", eval_time="15m"
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "FAILED" in out and "alertname: ModelServerErrorRate" in out and "got:[]" in out
    # Broken PromQL: promtool check rules refuses the file and names the rule's problem.
    unparsable = _planted(manifest, "ModelServerQueueSaturated", lambda e: e.replace(")", "", 1))
    done = _promtool_test(
        promtool,
        tmp_path,
        unparsable,
        series,
        _expected(unparsable, firing),
        interval="1m",
        eval_time="15m",
    )
    assert done.returncode != 0 and "parse error" in done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    exprs = []
    for env in ("dev", "staging", "prod"):
        cfg = load_deploy_config(env)
        for manifest in dashboards.manifests(cfg).values():
            validate_manifest(manifest, f"{env}/dashboard", cfg.kubernetes_version)
            (text,) = manifest["data"].values()
            for panel in json.loads(text)["panels"]:
                exprs += [target["expr"] for target in panel["targets"]]
    assert len(exprs) > 20
    rules = [
        {"record": f"tuneops:dashboard_query_{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        [str(promtool), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_rules_and_dashboards_land_in_the_gitops_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(gitops, "run_manifest_gate", lambda paths: "skipped")
    cfg = load_deploy_config("prod")
    result = gitops.render(cfg, model="s3://tuneops-prod/models/v1", root=tmp_path)
    monitoring = [f for f in result.files if f.startswith("monitoring/")]
    assert monitoring == [
        "monitoring/serving-dashboard.yaml",
        "monitoring/serving-rules.yaml",
        "monitoring/training-dashboard.yaml",
        "monitoring/training-rules.yaml",
    ]
    app = yaml.safe_load((tmp_path / "prod" / "apps" / "monitoring.yaml").read_text())
    assert app["spec"]["source"]["path"] == "gitops/envs/prod/monitoring"
    rule = yaml.safe_load((tmp_path / "prod" / "monitoring" / "serving-rules.yaml").read_text())
    # kube-prometheus-stack's Prometheus selects rules by its Helm release label.
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    board = yaml.safe_load(
        (tmp_path / "prod" / "monitoring" / "serving-dashboard.yaml").read_text()
    )
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = board["data"].values()
    panels = json.loads(text)["panels"]
    legends = {t["legendFormat"] for p in panels for t in p["targets"]}
    assert legends == {"stable", "canary"}
    assert any(
        "vllm:time_to_first_token_seconds_bucket" in t["expr"] for p in panels for t in p["targets"]
    )
