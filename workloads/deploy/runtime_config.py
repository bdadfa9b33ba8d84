"""Typed sections of the deploy config for how a model is served on the cluster: the runtime
(the project's server or KServe's Hugging Face runtime on vLLM), autoscaling on LLM signals
through KEDA, the inference logger that feeds drift sampling, and the gateway's own auth, TLS
listener and per-user rate limit."""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneops.core.config import StrictModel

# Placeholders a Prometheus query may use; filled in per InferenceService at render time.
QUERY_FIELDS = frozenset({"namespace", "predictor"})
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def check_placeholders(value: str, allowed: frozenset[str] = QUERY_FIELDS) -> str:
    """A query's ``{name}`` placeholders are all in ``allowed`` (a literal brace is doubled)."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{exc} (write a literal brace as {{{{ or }}}})") from exc
    unknown = names - allowed
    if unknown:
        raise ValueError(
            f"unknown placeholder(s) {sorted(unknown)}; use {sorted(allowed)} "
            "(write a literal brace as {{ or }})"
        )
    return value


class HuggingFaceRuntime(StrictModel):
    """KServe's Hugging Face serving runtime, which serves text generation through vLLM."""

    # The ClusterServingRuntime that the kserve-runtime-configs chart installs.
    serving_runtime: str = Field("kserve-huggingfaceserver", pattern=_K8S_NAME)
    dtype: Literal["auto", "bfloat16", "float16"] = "bfloat16"
    max_model_len: int = Field(4096, ge=256)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    # Serve the version's LoRA adapter on its registered base model (vLLM's LoRA serving)
    # instead of the merged copy.
    lora: bool = False
    # vLLM accepts these ranks only; an adapter of a higher rank is refused at load.
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] = 64
    extra_args: list[str] = Field(default_factory=list)


class ScalingMetric(StrictModel):
    """One Prometheus query KEDA scales on; the replica count follows query / target."""

    query: str = Field(min_length=1)
    target: str = Field(pattern=r"^[0-9]+(\.[0-9]+)?$")

    @field_validator("query")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        return check_placeholders(value)


class AutoscalingConfig(StrictModel):
    # hpa: KServe's HPA on serving.scale_metric; keda: KServe renders a KEDA ScaledObject
    # from the Prometheus queries below (queue depth, time to first token).
    autoscaler: Literal["hpa", "keda"] = "hpa"
    prometheus_url: str = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    metrics: list[ScalingMetric] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keda_needs_metrics(self) -> AutoscalingConfig:
        if self.autoscaler == "keda" and not self.metrics:
            raise ValueError("autoscaler keda needs at least one entry in metrics")
        return self


class PromptLogging(StrictModel):
    """KServe's inference logger posting each request to the project's prompt sink, which
    scrubs, samples and writes the drift log (the GPU runtime has no sampler of its own)."""

    enabled: bool = False
    name: str = Field("prompt-sink", pattern=_K8S_NAME)
    # Name of the image in `images` that holds `tuneops monitor sink`.
    image: str = "serve"
    port: int = Field(8090, ge=1, le=65535)
    rate: float = Field(0.05, ge=0, le=1)
    # s3://bucket/prefix the sink writes the sampled prompts to.
    destination: str = Field(pattern=r"^s3://[^/]+(/.*)?$", default="s3://unset/prompts")
    service_account: str = Field("prompt-sink", pattern=_K8S_NAME)
    replicas: int = Field(1, ge=1)


class JwtProvider(StrictModel):
    """The identity provider whose tokens the gateway accepts."""

    name: str = Field("idp", pattern=_K8S_NAME)
    issuer: str = Field(pattern=r"^https://")
    audiences: list[str] = Field(min_length=1)
    jwks_uri: str = Field(pattern=r"^https://")
    # Claim copied into a request header for per-user rate limits and the access log.
    user_claim: str = "sub"


class GatewayAuth(StrictModel):
    # Users authenticate at the gateway with a JWT from this provider. A shared environment
    # is never rendered without it.
    jwt: JwtProvider | None = None
    required: bool = True
    # Header the gateway writes the user's identity to (set from the JWT claim).
    user_header: str = "x-tuneops-user"


class RateLimit(StrictModel):
    """Requests per user (the JWT claim) at the gateway; each gateway replica counts its own."""

    requests: int = Field(120, ge=1)
    unit: Literal["Second", "Minute", "Hour"] = "Minute"


class GatewayTls(StrictModel):
    # The Gateway listener (platform catalog: kserve-gateway) that terminates TLS with the
    # cert-manager Certificate; routes attach to it by name.
    listener: str = "https"
    certificate_secret: str = Field("kserve-gateway-tls", pattern=_K8S_NAME)


class NetworkAccess(StrictModel):
    """Namespaces whose pods may open connections to the model server pods: the gateway's
    proxies and Prometheus. Everything else is refused by a NetworkPolicy."""

    ingress_namespaces: list[str] = Field(
        default_factory=lambda: ["envoy-gateway-system", "monitoring"], min_length=1
    )
