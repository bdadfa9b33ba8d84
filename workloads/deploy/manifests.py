"""Every manifest of one environment, keyed by its path inside ``gitops/envs/<env>/``.

The InferenceServices come from ``workloads.deploy.predictor``, what stands in front of them
(route, gateway auth, rate limit, network policy, metrics) from ``workloads.deploy.gateway``,
the prompt sink from ``workloads.deploy.sink`` and the release state from
``workloads.deploy.release``. Argo CD Applications are built here. Everything is validated by
``workloads.deploy.validate`` before it is written.
"""

from __future__ import annotations

from typing import Any

from tuneops.core.errors import UserError
from workloads.deploy import alerts, dashboards, gateway, sink
from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import PART_OF, canary_name
from workloads.deploy.predictor import inference_service
from workloads.deploy.release import ReleaseState, release_configmap


def application(
    cfg: DeployConfig, *, name: str, path: str, namespace: str, create_namespace: bool
) -> dict[str, Any]:
    argo = cfg.argocd
    sync: dict[str, Any] = {
        "syncOptions": ["CreateNamespace=true"] if create_namespace else [],
        "retry": {"limit": 5, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "3m"}},
    }
    if argo.automated:
        sync["automated"] = {"prune": argo.prune, "selfHeal": argo.self_heal}
    if not sync["syncOptions"]:
        del sync["syncOptions"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": argo.namespace,
            "labels": {"app.kubernetes.io/part-of": PART_OF, "tuneops.io/env": cfg.env},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": argo.project,
            "source": {
                "repoURL": argo.repo_url,
                "targetRevision": argo.target_revision,
                "path": path,
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": sync,
        },
    }


def _front(cfg: DeployConfig, canary_percent: int | None) -> dict[str, dict[str, Any]]:
    """The route and what guards it (standard mode)."""
    files = {
        "serving/httproute.yaml": gateway.traffic_route(cfg, canary_percent),
        "serving/networkpolicy.yaml": gateway.network_policy(cfg),
        "serving/podmonitor.yaml": gateway.pod_monitor(cfg),
    }
    optional = {
        "serving/securitypolicy.yaml": gateway.security_policy(cfg),
        "serving/backend-token-filter.yaml": gateway.credential_filter(cfg),
        "serving/ratelimit.yaml": gateway.rate_limit_policy(cfg),
    }
    files.update({rel: manifest for rel, manifest in optional.items() if manifest is not None})
    return files


def env_manifests(cfg: DeployConfig, state: ReleaseState) -> dict[str, dict[str, Any]]:
    """Every manifest of the environment, keyed by its path inside ``gitops/envs/<env>/``."""
    base = f"{cfg.argocd.root_path}/{cfg.env}"
    serving = cfg.serving
    files: dict[str, dict[str, Any]] = {
        "root-app.yaml": application(
            cfg,
            name=f"tuneops-{cfg.env}",
            path=f"{base}/apps",
            namespace=cfg.argocd.namespace,
            create_namespace=False,
        ),
        "apps/serving.yaml": application(
            cfg,
            name=f"tuneops-{cfg.env}-serving",
            path=f"{base}/serving",
            namespace=serving.namespace,
            create_namespace=True,
        ),
        "serving/release-state.yaml": release_configmap(cfg, state),
        # Alerting rules and Grafana dashboards (workloads.deploy.alerts, .dashboards).
        "apps/monitoring.yaml": application(
            cfg,
            name=f"tuneops-{cfg.env}-monitoring",
            path=f"{base}/monitoring",
            namespace=serving.namespace,
            create_namespace=True,
        ),
    }
    files.update(alerts.manifests(cfg))
    files.update(dashboards.manifests(cfg))
    files.update(sink.manifests(cfg))
    canary = state.canary
    if serving.mode == "knative":
        if serving.runtime == "huggingface" and cfg.route.auth.required:
            raise UserError(
                f"{cfg.env}: the Hugging Face runtime checks no token and knative mode renders "
                "no gateway policy in front of it; use serving.mode standard"
            )
        # One InferenceService: the canary's model with canaryTrafficPercent; Knative keeps
        # the stable revision serving the rest.
        model = canary.model if canary else state.stable
        files["serving/inferenceservice.yaml"] = inference_service(
            cfg,
            model,
            name=serving.name,
            role="stable",
            canary_percent=canary.percent if canary else None,
        )
        files["serving/networkpolicy.yaml"] = gateway.network_policy(cfg)
        return files
    files["serving/inferenceservice.yaml"] = inference_service(
        cfg, state.stable, name=serving.name, role="stable", canary_percent=None
    )
    if canary:
        files["serving/inferenceservice-canary.yaml"] = inference_service(
            cfg, canary.model, name=canary_name(cfg), role="canary", canary_percent=None
        )
    files.update(_front(cfg, canary.percent if canary else None))
    return files
