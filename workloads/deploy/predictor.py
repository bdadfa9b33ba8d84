"""The InferenceService of one environment, on either runtime.

- ``project``: the project's own server image (``tuneops serve``), the CPU runtime; it checks
  the bearer token itself, from a Kubernetes Secret.
- ``huggingface``: KServe's Hugging Face serving runtime, which serves text generation through
  vLLM on a GPU (OpenAI routes under ``/openai/v1``); a LoRA version is served as its adapter on
  the registered base. This runtime checks no token: the gateway authenticates, and a
  NetworkPolicy (``workloads.deploy.gateway``) admits only the gateway and Prometheus.

Autoscaling is KServe's HPA or, on LLM signals, KEDA (KServe renders the ScaledObject from
``autoScaling.metrics``). With prompt logging on, KServe's inference logger posts every request
to the project's prompt sink (``workloads.deploy.sink``).

Built with the kserve SDK's classes and serialized through its sanitizer.
"""

from __future__ import annotations

from typing import Any

from tuneops.core.errors import UserError
from workloads.deploy.config import SERVE_TOKEN_ENV, DeployConfig
from workloads.deploy.k8s import labels, sanitize
from workloads.deploy.release import ModelVersion

MODEL_MOUNT = "/mnt/models"
# KServe's names of the deployment modes since v0.15 (RawDeployment and Serverless before).
KSERVE_MODE = {"standard": "Standard", "knative": "Knative"}
# Where the base model and the adapter land in the pod when a LoRA version is served.
BASE_MOUNT = f"{MODEL_MOUNT}/base"
ADAPTER_MOUNT = f"{MODEL_MOUNT}/adapter"
VISIBILITY_LABEL = "networking.kserve.io/visibility"


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


def _hf_args(cfg: DeployConfig, model: ModelVersion) -> list[str]:
    """Arguments of KServe's Hugging Face server, after the runtime's own (the last of a
    repeated flag wins): vLLM as the engine, the served name every client uses (the same for
    the stable and the canary InferenceService), and vLLM's engine settings."""
    hf = cfg.serving.huggingface
    name = cfg.serving.name
    args = ["--backend=vllm"]
    if model.adapter_uri:
        args += [
            f"--model_dir={BASE_MOUNT}",
            f"--model_name={name}-base",
            "--enable-lora",
            f"--lora-modules={name}={ADAPTER_MOUNT}",
            f"--max-lora-rank={hf.max_lora_rank}",
        ]
    else:
        args.append(f"--model_name={name}")
    args += [
        f"--dtype={hf.dtype}",
        f"--max-model-len={hf.max_model_len}",
        f"--gpu-memory-utilization={hf.gpu_memory_utilization}",
        *hf.extra_args,
    ]
    return args


def _hf_model(cfg: DeployConfig, model: ModelVersion, requests: dict, limits: dict):
    """The ``model`` of a predictor on the Hugging Face runtime, and the storage URIs KServe
    downloads when the version is a LoRA adapter on a base (None for a merged model)."""
    from kserve import V1beta1ModelFormat, V1beta1ModelSpec
    from kserve.models import V1beta1StorageUri
    from kubernetes.client import V1Capabilities, V1ResourceRequirements, V1SecurityContext

    hf = cfg.serving.huggingface
    if hf.lora and not (model.adapter_uri and model.base_uri):
        raise UserError(
            f"{cfg.env}: serving.huggingface.lora is on but {model.ref} has no adapter on a "
            "registered base (train with `tuneops train` so the run logs adapter/ and "
            "tuneops.base_model, with the base registered)"
        )
    spec = V1beta1ModelSpec(
        name="kserve-container",
        model_format=V1beta1ModelFormat(name="huggingface"),
        runtime=hf.serving_runtime,
        args=_hf_args(cfg, model),
        resources=V1ResourceRequirements(requests=requests or None, limits=limits or None),
        # The runtime sets the same; said here so the policy gate sees it in the manifest.
        security_context=V1SecurityContext(
            run_as_non_root=True,
            allow_privilege_escalation=False,
            capabilities=V1Capabilities(drop=["ALL"]),
        ),
    )
    if not model.adapter_uri:
        spec.storage_uri = model.storage_uri
        return spec, None
    storage = [
        V1beta1StorageUri(uri=model.base_uri, mount_path=BASE_MOUNT),
        V1beta1StorageUri(uri=model.adapter_uri, mount_path=ADAPTER_MOUNT),
    ]
    return spec, storage


def _autoscaling(cfg: DeployConfig, name: str):
    """KEDA scaling on the configured Prometheus queries of this InferenceService's pods."""
    from kserve import (
        V1beta1AutoScalingSpec,
        V1beta1ExternalMetrics,
        V1beta1ExternalMetricSource,
        V1beta1MetricsSpec,
        V1beta1MetricTarget,
    )

    scaling = cfg.serving.autoscaling
    if scaling.autoscaler != "keda":
        return None
    fill = {"namespace": cfg.serving.namespace, "predictor": f"{name}-predictor"}
    metrics = [
        V1beta1MetricsSpec(
            type="External",
            external=V1beta1ExternalMetricSource(
                metric=V1beta1ExternalMetrics(
                    backend="prometheus",
                    server_address=scaling.prometheus_url,
                    query=metric.query.format(**fill),
                ),
                target=V1beta1MetricTarget(type="Value", value=metric.target),
            ),
        )
        for metric in scaling.metrics
    ]
    # Scale-down waits KServe's stabilization window (its inferenceservice config, 300 s by
    # default), so a quiet minute does not drop replicas a burst will need again.
    return V1beta1AutoScalingSpec(metrics=metrics)


def _logger(cfg: DeployConfig):
    """KServe's inference logger posting each request to the prompt sink."""
    from kserve import V1beta1LoggerSpec

    from workloads.deploy.sink import sink_url

    if not cfg.serving.prompt_logging.enabled:
        return None
    return V1beta1LoggerSpec(mode="request", url=sink_url(cfg))


def _annotations(cfg: DeployConfig, model: ModelVersion) -> dict[str, str]:
    annotations = {
        "serving.kserve.io/deploymentMode": KSERVE_MODE[cfg.serving.mode],
        "tuneops.io/model-ref": model.ref,
        "tuneops.io/storage-uri": model.storage_uri,
    }
    if model.version:
        annotations["tuneops.io/model-version"] = model.version
    if cfg.serving.mode == "standard":
        annotations["serving.kserve.io/autoscalerClass"] = cfg.serving.autoscaling.autoscaler
    return annotations


def _predictor(cfg: DeployConfig, model: ModelVersion, name: str, canary_percent: int | None):
    from kserve import V1beta1PredictorSpec

    serving = cfg.serving
    requests = dict(serving.resources.requests)
    limits = dict(serving.resources.limits)
    tolerations, node_selector = _gpu_placement(cfg, requests, limits)
    scaling = _autoscaling(cfg, name)
    predictor = V1beta1PredictorSpec(
        service_account_name=serving.service_account,
        min_replicas=serving.min_replicas,
        max_replicas=serving.max_replicas,
        auto_scaling=scaling,
        tolerations=tolerations,
        node_selector=node_selector,
        canary_traffic_percent=canary_percent,
        termination_grace_period_seconds=_termination_grace(cfg),
        logger=_logger(cfg),
    )
    if scaling is None:
        predictor.scale_metric = serving.scale_metric
        predictor.scale_target = serving.scale_target
    if serving.runtime == "huggingface":
        predictor.model, predictor.storage_uris = _hf_model(cfg, model, requests, limits)
    else:
        predictor.containers = [_server_container(cfg, model, requests, limits)]
    return predictor


def inference_service(
    cfg: DeployConfig, model: ModelVersion, *, name: str, role: str, canary_percent: int | None
) -> dict[str, Any]:
    """The KServe InferenceService serving ``model`` on the environment's runtime."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec
    from kubernetes.client import V1ObjectMeta

    isvc_labels = labels(cfg, role)
    if cfg.serving.mode == "standard":
        # KServe creates no route of its own on the gateway: the project's HTTPRoute, behind
        # the gateway's SecurityPolicy, is the only way in from outside the cluster.
        isvc_labels[VISIBILITY_LABEL] = "cluster-local"
    isvc = V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=name,
            namespace=cfg.serving.namespace,
            labels=isvc_labels,
            annotations=_annotations(cfg, model),
        ),
        spec=V1beta1InferenceServiceSpec(predictor=_predictor(cfg, model, name, canary_percent)),
    )
    return sanitize(isvc)
