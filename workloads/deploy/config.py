"""Typed per-environment deploy config: ``configs/deploy/<env>.yaml``.

One file per environment (not overlays): what serves where, on which image, with which
resources, how the training job is shaped, and where Argo CD finds the rendered manifests.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneops.core.config import StrictModel, load_config
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR
from tuneops.core.tracking import TrackingConfig
from workloads.deploy.monitoring_config import AlertsConfig, AnalysisConfig, DashboardsConfig
from workloads.deploy.runtime_config import (
    AutoscalingConfig,
    GatewayAuth,
    GatewayTls,
    HuggingFaceRuntime,
    NetworkAccess,
    PromptLogging,
    RateLimit,
)

DEPLOY_CONFIG_DIR = CONFIG_DIR / "deploy"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Tags that move: an image named by one of them is not reproducible, so they are refused.
MUTABLE_TAGS = frozenset({"latest", "main", "master", "stable", "dev", "edge", "nightly"})


class ImageRef(StrictModel):
    """A container image pinned by digest, or by a tag that the registry keeps immutable."""

    registry: str = ""
    repository: str
    tag: str | None = None
    digest: str | None = None

    @field_validator("digest")
    @classmethod
    def _digest_shape(cls, value: str | None) -> str | None:
        if value is not None and not _DIGEST.match(value):
            raise ValueError("digest must look like sha256:<64 hex digits>")
        return value

    @field_validator("tag")
    @classmethod
    def _immutable_tag(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in MUTABLE_TAGS:
            raise ValueError(f"tag {value!r} moves; use a version tag or a digest")
        return value

    @model_validator(mode="after")
    def _pinned(self) -> ImageRef:
        if not self.tag and not self.digest:
            raise ValueError("an image needs a tag or a digest")
        return self

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def reference(self) -> str:
        """``name@digest`` when a digest is known (immutable), else ``name:tag``."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag}"


class ImageSpec(StrictModel):
    """One image the project builds: its Dockerfile and the repository it is pushed to."""

    dockerfile: str
    repository: str
    # Appended to the release tag (e.g. "-gpu" for the GPU variant in the same repository).
    tag_suffix: str = ""
    # Set after a push to pin by digest (immutable) instead of by tag.
    digest: str | None = None


class ImagesConfig(StrictModel):
    registry: str = ""
    # Release tag of every image; the repositories refuse to overwrite a tag (immutable).
    tag: str
    build_args: dict[str, str] = Field(default_factory=dict)
    images: dict[str, ImageSpec]

    def ref(self, name: str) -> ImageRef:
        if name not in self.images:
            known = ", ".join(sorted(self.images))
            raise UserError(f"no image named {name!r} in images.images (known: {known})")
        spec = self.images[name]
        return ImageRef(
            registry=self.registry,
            repository=spec.repository,
            tag=f"{self.tag}{spec.tag_suffix}",
            digest=spec.digest,
        )


class Toleration(StrictModel):
    key: str = "nvidia.com/gpu"
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = "true"
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = "NoSchedule"


class Resources(StrictModel):
    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class GpuPlacement(StrictModel):
    """Where GPU pods go: the taint they tolerate and the node labels they select."""

    toleration: Toleration = Field(default_factory=Toleration)
    node_selector: dict[str, str] = Field(default_factory=dict)


# The server reads its bearer token from this variable (configs/serve: auth.token_env).
SERVE_TOKEN_ENV = "TUNEOPS_SERVE_TOKEN"


class TokenSecret(StrictModel):
    """A key of a Kubernetes Secret in the serving namespace."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    key: str = Field("token", pattern=r"^[-._a-zA-Z0-9]+$")


class ServingAuth(StrictModel):
    # The bearer token every serving route needs comes from this Secret, never from a literal
    # in this file. A render with `required` on and no secret is refused.
    token_secret: TokenSecret | None = None
    required: bool = True


class ServingConfig(StrictModel):
    # project: the project's own server image (`tuneops serve`), the CPU runtime.
    # huggingface: KServe's Hugging Face serving runtime, which runs vLLM on the GPU.
    runtime: Literal["project", "huggingface"] = "project"
    huggingface: HuggingFaceRuntime = Field(default_factory=HuggingFaceRuntime)
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    prompt_logging: PromptLogging = Field(default_factory=PromptLogging)
    # standard: KServe's Standard (formerly RawDeployment) mode; a canary is a second
    # InferenceService behind a weighted Gateway API HTTPRoute. knative: KServe's Knative
    # (formerly Serverless) mode; a canary is the InferenceService's canaryTrafficPercent.
    mode: Literal["standard", "knative"] = "standard"
    name: str = "cloudops-assistant"
    namespace: str = "tuneops"
    service_account: str = "model-server"
    # Name of the image in `images` (serve, or serve-gpu where the environment serves on GPU).
    image: str = "serve"
    gpu: bool = False
    gpus: int = 1
    resources: Resources = Field(default_factory=Resources)
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=3, ge=1)
    scale_metric: Literal["cpu", "memory", "concurrency", "rps"] = "cpu"
    scale_target: int = Field(default=70, ge=1)
    port: int = 8080
    # Arguments passed to `tuneops serve` after --model and --port.
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    auth: ServingAuth = Field(default_factory=ServingAuth)
    # The pod's terminationGracePeriodSeconds: longer than the server's own shutdown
    # (configs/serve server.grace_period_s), so Kubernetes never kills it mid-drain.
    termination_grace_s: int = Field(default=45, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> ServingConfig:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        if self.runtime == "huggingface" and not self.gpu:
            raise ValueError("runtime huggingface serves through vLLM, which needs gpu: true")
        if self.runtime == "project" and self.huggingface.lora:
            raise ValueError("huggingface.lora applies to runtime huggingface only")
        if SERVE_TOKEN_ENV in self.env:
            raise ValueError(
                f"env.{SERVE_TOKEN_ENV}: a token is never a literal here; name its Kubernetes "
                "Secret in serving.auth.token_secret"
            )
        return self


class GatewayRef(StrictModel):
    name: str = "kserve-ingress-gateway"
    namespace: str = "kserve"


class RouteConfig(StrictModel):
    """The weighted route used for canaries in standard mode."""

    gateway: GatewayRef = Field(default_factory=GatewayRef)
    hostnames: list[str] = Field(default_factory=list)
    # Port of the `<isvc>-predictor` Service KServe creates in standard mode.
    service_port: int = 80
    auth: GatewayAuth = Field(default_factory=GatewayAuth)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    tls: GatewayTls = Field(default_factory=GatewayTls)
    network: NetworkAccess = Field(default_factory=NetworkAccess)


class ArgoCDConfig(StrictModel):
    namespace: str = "argocd"
    project: str = "default"
    repo_url: str
    target_revision: str = "main"
    # Folder (relative to the repository root) that holds one folder per environment.
    root_path: str = "gitops/envs"
    automated: bool = True
    prune: bool = True
    self_heal: bool = True


class RegistryRefConfig(StrictModel):
    # Registered model promoted by default (contract: cloudops-assistant@champion).
    model: str = "models:/cloudops-assistant@champion"
    # Where the tracking server keeps artifacts. A `mlflow-artifacts:/x` URI that the
    # registry returns maps to `<artifacts_destination>/x`, the location KServe downloads.
    artifacts_destination: str | None = None
    # Refuse a model whose storage URI is not s3:// (clusters cannot read a laptop path).
    require_s3: bool = True


class TrainingConfig(StrictModel):
    image: str = "train"
    namespace: str = "tuneops"
    service_account: str = "trainer"
    # ClusterTrainingRuntime that Kubeflow Trainer ships for torchrun jobs.
    runtime: str = "torch-distributed"
    runtime_kind: Literal["ClusterTrainingRuntime", "TrainingRuntime"] = "ClusterTrainingRuntime"
    # Replicated job of the runtime that runs the trainer (the torch runtimes name it "node").
    trainer_job: str = "node"
    trainer_container: str = "node"
    num_nodes: int = Field(default=1, ge=1)
    gpus_per_node: int = Field(default=1, ge=0)
    resources_per_node: Resources = Field(default_factory=Resources)
    # Where the job reads the dataset snapshot and writes its outputs.
    data_uri: str
    output_uri: str
    # Config file inside the image passed to `tuneops train --config`.
    train_config: str = "configs/train/default.yaml"
    active_deadline_seconds: int | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # Node labels of the training pool; null: the environment's gpu.node_selector.
    node_selector: dict[str, str] | None = None
    # How long `run_on_cluster` follows the job before handing back (seconds; 0: do not wait).
    follow_timeout_s: int = 6 * 3600
    poll_interval_s: float = 10.0

    @field_validator("data_uri", "output_uri")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://"):
            raise ValueError("must be an s3:// URI (pods read and write object storage)")
        return value


class DeployConfig(StrictModel):
    env: str
    images: ImagesConfig
    serving: ServingConfig
    route: RouteConfig = Field(default_factory=RouteConfig)
    gpu: GpuPlacement = Field(default_factory=GpuPlacement)
    argocd: ArgoCDConfig
    registry: RegistryRefConfig = Field(default_factory=RegistryRefConfig)
    # The MLflow tracking server that holds the registry.
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    training: TrainingConfig
    # Kubernetes version whose schemas validate the core kinds.
    kubernetes_version: str = "1.31"
    # Canary analysis on live signals (`tuneops release analyze`), the alerting rules and the
    # Grafana dashboards rendered beside the manifests.
    analysis: AnalysisConfig
    alerts: AlertsConfig
    dashboards: DashboardsConfig = Field(default_factory=DashboardsConfig)

    @model_validator(mode="after")
    def _images_known(self) -> DeployConfig:
        for field_name, name in (
            ("serving.image", self.serving.image),
            ("training.image", self.training.image),
        ):
            if name not in self.images.images:
                raise ValueError(f"{field_name}: {name!r} is not one of images.images")
        logging_image = self.serving.prompt_logging.image
        if self.serving.prompt_logging.enabled and logging_image not in self.images.images:
            raise ValueError(
                f"serving.prompt_logging.image: {logging_image!r} is not one of images.images"
            )
        self.images.ref(self.serving.image)  # tag checks
        return self

    @model_validator(mode="after")
    def _alerts_name_signals(self) -> DeployConfig:
        known = self.analysis.signals
        for rule in self.alerts.serving:
            if rule.signal is not None and rule.signal not in known:
                raise ValueError(
                    f"alerts.serving {rule.alert}: signal {rule.signal!r} is not one of "
                    f"analysis.signals ({', '.join(sorted(known))})"
                )
        return self

    def serving_image(self) -> str:
        return self.images.ref(self.serving.image).reference()

    def training_image(self) -> str:
        return self.images.ref(self.training.image).reference()


def config_path(env: str) -> Path:
    return DEPLOY_CONFIG_DIR / f"{env}.yaml"


def known_envs() -> list[str]:
    return sorted(p.stem for p in DEPLOY_CONFIG_DIR.glob("*.yaml") if "." not in p.stem)


def load_deploy_config(
    env: str, *, path: Path | None = None, overrides: list[str] | None = None
) -> DeployConfig:
    """Read ``configs/deploy/<env>.yaml`` (or ``path``) into a validated DeployConfig."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", env):
        raise UserError(f"environment name {env!r}: use lower-case letters, digits and dashes")
    path = path or config_path(env)
    if not path.is_file():
        known = ", ".join(known_envs()) or "none"
        raise UserError(f"no deploy config for environment {env!r} ({path}); known: {known}")
    cfg = load_config(DeployConfig, path, overrides=overrides)
    if cfg.env != env:
        raise UserError(f"{path}: env is {cfg.env!r} but the file is for {env!r}")
    return cfg
