"""Builders for the serving manifests of one environment.

The InferenceService is built with the kserve SDK's model classes and serialized through the
Kubernetes client's sanitizer (camelCase keys, no nulls). Argo CD Applications, the
Gateway API route and the release-state ConfigMap are plain mappings checked by
``workloads.deploy.validate``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from tuneops.core.config import StrictModel
from tuneops.core.errors import UserError
from workloads.deploy.config import SERVE_TOKEN_ENV, DeployConfig

MODEL_MOUNT = "/mnt/models"
PART_OF = "tuneops"
KSERVE_MODE = {"standard": "RawDeployment", "knative": "Serverless"}


class ModelVersion(StrictModel):
    """One deployable model: what was asked for and the pinned location it resolved to."""

    ref: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    storage_uri: str

    def label(self) -> str:
        if self.name and self.version:
            return f"{self.name} v{self.version}"
        return self.storage_uri


class Canary(StrictModel):
    model: ModelVersion
    percent: int


class ReleaseState(StrictModel):
    """What serves in an environment; kept in the rendered ConfigMap so rollback needs no
    other source."""

    stable: ModelVersion
    canary: Canary | None = None
    previous: ModelVersion | None = None


def _sanitize(obj: Any) -> dict[str, Any]:
    # kserve's generated client maps attribute names to the API's camelCase keys and drops
    # unset fields, for its own classes and the Kubernetes ones nested in them.
    from kserve.api_client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def _labels(cfg: DeployConfig, role: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": cfg.serving.name,
        "app.kubernetes.io/part-of": PART_OF,
        "tuneops.io/env": cfg.env,
        "tuneops.io/role": role,
    }


def canary_name(cfg: DeployConfig) -> str:
    return f"{cfg.serving.name}-canary"


def _gpu_placement(
    cfg: DeployConfig, requests: dict, limits: dict
) -> tuple[list | None, dict | None]:
    """On a GPU pool: ask for the GPUs and tolerate the pool's taint. Returns the tolerations
    and node selector (None without a GPU)."""
    from kubernetes.client import V1Toleration

    serving = cfg.serving
    if not serving.gpu:
        return None, None
    limits["nvidia.com/gpu"] = str(serving.gpus)
    requests["nvidia.com/gpu"] = str(serving.gpus)
    tol = cfg.gpu.toleration
    tolerations = [
        V1Toleration(key=tol.key, operator=tol.operator, value=tol.value, effect=tol.effect)
    ]
    return tolerations, dict(cfg.gpu.node_selector) or None


def _termination_grace(cfg: DeployConfig) -> int:
    """The pod's grace period, refused unless it outlasts the server's own shutdown."""
    from workloads.serve.config import load_serve_config

    server = load_serve_config().server
    grace = cfg.serving.termination_grace_s
    if grace <= server.grace_period_s:
        raise UserError(
            f"{cfg.env}: serving.termination_grace_s is {grace}; it must be longer than the "
            f"server's grace_period_s ({server.grace_period_s}) so the pod is not killed mid-drain"
        )
    return grace


def _token(cfg: DeployConfig) -> tuple[list, list[str]]:
    """The server's bearer token from its Secret, and the flag that makes the server refuse to
    start without it. A render that needs auth and names no Secret is refused."""
    from kubernetes.client import V1EnvVar, V1EnvVarSource, V1SecretKeySelector

    auth = cfg.serving.auth
    if auth.token_secret is None:
        if auth.required:
            raise UserError(
                f"{cfg.env}: serving.auth.token_secret is not set; the model server is never "
                "rendered without auth (name the Kubernetes Secret that holds its token)"
            )
        return [], []
    secret = V1SecretKeySelector(name=auth.token_secret.name, key=auth.token_secret.key)
    env = [V1EnvVar(name=SERVE_TOKEN_ENV, value_from=V1EnvVarSource(secret_key_ref=secret))]
    return env, ["--set", "auth.required=true"]


def _server_container(cfg: DeployConfig, model: ModelVersion, requests: dict, limits: dict):
    """The project's model server container, reading the model from ``STORAGE_URI``."""
    from kubernetes.client import (
        V1Capabilities,
        V1Container,
        V1ContainerPort,
        V1EnvVar,
        V1HTTPGetAction,
        V1Probe,
        V1ResourceRequirements,
        V1SecurityContext,
    )

    serving = cfg.serving
    env = [V1EnvVar(name="STORAGE_URI", value=model.storage_uri)]
    env += [V1EnvVar(name=k, value=v) for k, v in sorted(serving.env.items())]
    auth_env, auth_args = _token(cfg)
    return V1Container(
        name="kserve-container",
        image=cfg.serving_image(),
        args=[
            "serve",
            "--model",
            MODEL_MOUNT,
            "--port",
            str(serving.port),
            *auth_args,
            *serving.extra_args,
        ],
        env=env + auth_env,
        ports=[V1ContainerPort(container_port=serving.port, name="http1", protocol="TCP")],
        resources=V1ResourceRequirements(requests=requests or None, limits=limits or None),
        readiness_probe=V1Probe(
            http_get=V1HTTPGetAction(path="/v2/health/ready", port=serving.port),
            period_seconds=10,
            failure_threshold=3,
        ),
        liveness_probe=V1Probe(
            http_get=V1HTTPGetAction(path="/v2/health/live", port=serving.port),
            initial_delay_seconds=30,
            period_seconds=20,
        ),
        security_context=V1SecurityContext(
            run_as_non_root=True,
            allow_privilege_escalation=False,
            read_only_root_filesystem=False,
            capabilities=V1Capabilities(drop=["ALL"]),
        ),
    )


def _annotations(cfg: DeployConfig, model: ModelVersion) -> dict[str, str]:
    annotations = {
        "serving.kserve.io/deploymentMode": KSERVE_MODE[cfg.serving.mode],
        "tuneops.io/model-ref": model.ref,
        "tuneops.io/storage-uri": model.storage_uri,
    }
    if model.version:
        annotations["tuneops.io/model-version"] = model.version
    if cfg.serving.mode == "standard":
        annotations["serving.kserve.io/autoscalerClass"] = "hpa"
    return annotations


def inference_service(
    cfg: DeployConfig, model: ModelVersion, *, name: str, role: str, canary_percent: int | None
) -> dict[str, Any]:
    """The KServe InferenceService serving ``model`` with the project's server image."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec
    from kubernetes.client import V1ObjectMeta

    serving = cfg.serving
    requests = dict(serving.resources.requests)
    limits = dict(serving.resources.limits)
    tolerations, node_selector = _gpu_placement(cfg, requests, limits)
    predictor = V1beta1PredictorSpec(
        service_account_name=serving.service_account,
        min_replicas=serving.min_replicas,
        max_replicas=serving.max_replicas,
        scale_metric=serving.scale_metric,
        scale_target=serving.scale_target,
        containers=[_server_container(cfg, model, requests, limits)],
        tolerations=tolerations,
        node_selector=node_selector,
        canary_traffic_percent=canary_percent,
        termination_grace_period_seconds=_termination_grace(cfg),
    )
    isvc = V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=name,
            namespace=serving.namespace,
            labels=_labels(cfg, role),
            annotations=_annotations(cfg, model),
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    return _sanitize(isvc)


def traffic_route(cfg: DeployConfig, canary_percent: int | None) -> dict[str, Any]:
    """Gateway API HTTPRoute splitting traffic between the stable and canary predictors."""
    serving, route = cfg.serving, cfg.route
    backends = [
        {
            "kind": "Service",
            "name": f"{serving.name}-predictor",
            "port": route.service_port,
            "weight": 100 - (canary_percent or 0),
        }
    ]
    if canary_percent:
        backends.append(
            {
                "kind": "Service",
                "name": f"{canary_name(cfg)}-predictor",
                "port": route.service_port,
                "weight": canary_percent,
            }
        )
    spec: dict[str, Any] = {
        "parentRefs": [{"name": route.gateway.name, "namespace": route.gateway.namespace}],
        "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": backends}
        ],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": f"{serving.name}-traffic",
            "namespace": serving.namespace,
            "labels": _labels(cfg, "traffic"),
        },
        "spec": spec,
    }


def release_configmap(cfg: DeployConfig, state: ReleaseState) -> dict[str, Any]:
    """The release state as a ConfigMap beside the manifests it describes."""

    def dump(model: BaseModel | None) -> str:
        return json.dumps(model.model_dump() if model else None, sort_keys=True, indent=2) + "\n"

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{cfg.serving.name}-release",
            "namespace": cfg.serving.namespace,
            "labels": _labels(cfg, "release-state"),
        },
        "data": {
            "stable": dump(state.stable),
            "canary": dump(state.canary),
            "previous": dump(state.previous),
        },
    }


def state_from_configmap(manifest: dict[str, Any]) -> ReleaseState:
    data = manifest.get("data") or {}
    loaded = {k: json.loads(v) for k, v in data.items() if v is not None}
    return ReleaseState.model_validate({k: v for k, v in loaded.items() if v is not None})


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
    }
    canary = state.canary
    if serving.mode == "knative":
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
        return files
    files["serving/inferenceservice.yaml"] = inference_service(
        cfg, state.stable, name=serving.name, role="stable", canary_percent=None
    )
    if canary:
        files["serving/inferenceservice-canary.yaml"] = inference_service(
            cfg, canary.model, name=canary_name(cfg), role="canary", canary_percent=None
        )
    files["serving/httproute.yaml"] = traffic_route(cfg, canary.percent if canary else None)
    return files
