"""Typed configuration: the tooling settings and one YAML file per environment.

``configs/infra/default.yaml`` holds the settings of the tooling (output folder, stack order,
Terraform, the local moto server). Each file in ``configs/infra/environments/`` is one
environment; adding an environment is adding a file. A command loads both once (with its
``--set`` overrides) and hands the objects down.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tuneops.core.config import StrictModel, load_config
from tuneops.core.environments import ENVIRONMENTS_DIR, check_environment
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR, REPO_ROOT

INFRA_CONFIG_DIR = CONFIG_DIR / "infra"
STACKS = ("network", "cluster", "data", "platform")


# --------------------------------------------------------------------------- tooling settings


class TerraformSettings(StrictModel):
    binary: str = "terraform"
    mirror_env: str = "TUNEOPS_TF_PLUGIN_MIRROR"
    default_mirror: str = "/opt/tf-plugins"
    parallelism: int = Field(10, ge=1)
    lock_timeout_s: int = Field(0, ge=0)


class LocalSettings(StrictModel):
    host: str = "127.0.0.1"
    moto_port: int = Field(5055, ge=1, le=65535)
    moto_seed: int = 20251124
    parallelism: int = Field(10, ge=1)

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not ipaddress.ip_address(value).is_loopback:
            raise ValueError("the local environment listens on loopback only")
        return value


class InfraSettings(StrictModel):
    outdir: str = "cdktf.out"
    stack_order: list[Literal["network", "cluster", "data", "platform"]] = Field(
        default_factory=lambda: list(STACKS)
    )
    terraform: TerraformSettings = TerraformSettings()
    local: LocalSettings = LocalSettings()

    @property
    def outdir_path(self) -> Path:
        return _repo_path(self.outdir)

    @model_validator(mode="after")
    def _all_stacks(self) -> InfraSettings:
        if sorted(self.stack_order) != sorted(STACKS):
            raise ValueError(f"stack_order must list each of {', '.join(STACKS)} once")
        return self


def _repo_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


def load_settings(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> InfraSettings:
    return load_config(
        InfraSettings, path or INFRA_CONFIG_DIR / "default.yaml", overrides=overrides
    )


# --------------------------------------------------------------------------- environments


class StateConfig(StrictModel):
    bucket: str
    key_prefix: str = "tuneops"


class NetworkConfig(StrictModel):
    cidr: str
    azs: list[str] = Field(min_length=2)
    nat: Literal["none", "single", "per_az"] = "single"
    flow_log_retention_days: int = Field(30, ge=1)

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        net = ipaddress.ip_network(value)
        if net.prefixlen > 20:
            raise ValueError(
                "the VPC needs at least a /20 to hold a public and a private /24 per AZ"
            )
        return value


class NodePool(StrictModel):
    instance_types: list[str] = Field(min_length=1)
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=1)
    desired_size: int = Field(ge=0)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    disk_gb: int = Field(50, ge=20)

    @model_validator(mode="after")
    def _sizes(self):
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("sizes must satisfy min_size <= desired_size <= max_size")
        return self


class GpuPool(NodePool):
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    gpus_per_node: int = Field(1, ge=1)


DEFAULT_ADDONS = {
    "vpc-cni": "v1.19.2-eksbuild.1",
    "coredns": "v1.11.4-eksbuild.2",
    "kube-proxy": "v1.31.3-eksbuild.2",
    "aws-ebs-csi-driver": "v1.38.1-eksbuild.2",
}


class ClusterConfig(StrictModel):
    name: str
    version: str
    endpoint_public_access: bool
    public_access_cidrs: list[str] = Field(default_factory=list)
    log_types: list[str] = Field(
        default_factory=lambda: ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    log_retention_days: int = Field(365, ge=1)
    # Managed add-ons: name -> pinned version.
    addons: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_ADDONS))
    system_pool: NodePool
    gpu_pools: list[GpuPool] = Field(default_factory=list)
    # Copy the autoscaler's node-template tags onto each node group's Auto Scaling group.
    propagate_asg_tags: bool = True

    @model_validator(mode="after")
    def _endpoint(self):
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError("a public API endpoint needs public_access_cidrs (never 0.0.0.0/0)")
        if "0.0.0.0/0" in self.public_access_cidrs:
            raise ValueError("public_access_cidrs must not contain 0.0.0.0/0")
        return self


class StorageConfig(StrictModel):
    prefix: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,40}$")
    noncurrent_version_expiration_days: int = Field(30, ge=1)
    transition_to_ia_days: int = Field(30, ge=30)
    log_retention_days: int = Field(365, ge=1)
    # A bucket policy that denies every request not made over TLS.
    require_tls: bool = True
    # Prefix of the artifacts bucket under which MLflow keeps run artifacts and registered
    # models (the mlflow release's artifactRoot.s3.path in platform/catalog.yaml). KServe
    # downloads registered models from there, so the model server may read this prefix only.
    mlflow_prefix: str = Field("mlflow", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*[A-Za-z0-9]$")


class DatabaseConfig(StrictModel):
    instance_class: str
    allocated_storage_gb: int = Field(ge=20)
    engine_version: str
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int = Field(ge=1)
    performance_insights: bool = True
    db_name: str = "mlflow"
    username: str = "mlflow"


class RegistryConfig(StrictModel):
    repositories: list[str] = Field(default_factory=lambda: ["train", "eval", "serve"])
    keep_images: int = Field(50, ge=1)


class ServiceAccount(StrictModel):
    namespace: str
    name: str


class IamConfig(StrictModel):
    trainer: ServiceAccount = ServiceAccount(namespace="tuneops", name="trainer")
    model_server: ServiceAccount = ServiceAccount(namespace="tuneops", name="model-server")
    mlflow: ServiceAccount = ServiceAccount(namespace="mlflow", name="mlflow")


class PlatformConfig(StrictModel):
    plan: bool = True
    values_overlay: str


class Environment(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    account_id: str = Field(pattern=r"^\d{12}$")
    region: str
    owner: str
    cost_center: str
    local_endpoint: str | None = None
    extra_tags: dict[str, str] = Field(default_factory=dict)
    state: StateConfig
    network: NetworkConfig
    cluster: ClusterConfig
    storage: StorageConfig
    database: DatabaseConfig
    registry: RegistryConfig = RegistryConfig()
    iam: IamConfig = IamConfig()
    platform: PlatformConfig

    @property
    def is_local(self) -> bool:
        return self.local_endpoint is not None

    @property
    def is_prod(self) -> bool:
        return self.name == "prod"

    @property
    def tags(self) -> dict[str, str]:
        return {
            "environment": self.name,
            "owner": self.owner,
            "cost-center": self.cost_center,
            "managed-by": "tuneops-cdktf",
            **self.extra_tags,
        }

    def bucket_names(self) -> dict[str, str]:
        """Bucket names by kind: datasets, artifacts, models, logs (no cdktf import needed)."""
        names = {
            kind: f"{self.storage.prefix}-{kind}" for kind in ("datasets", "artifacts", "models")
        }
        names["logs"] = f"{self.storage.prefix}-access-logs"
        return names

    def stack_name(self, stack: str) -> str:
        return f"{self.name}-{stack}"

    def state_key(self, stack: str) -> str:
        return f"{self.state.key_prefix}/{self.name}/{stack}.tfstate"

    @model_validator(mode="after")
    def _azs_in_region(self):
        for az in self.network.azs:
            if not az.startswith(self.region):
                raise ValueError(f"availability zone {az} is not in region {self.region}")
        if self.name == "prod" and len(self.network.azs) < 3:
            raise ValueError("prod spans at least 3 availability zones")
        return self


def load_environment(name: str, overrides: list[str] | None = None) -> Environment:
    """The environment ``configs/infra/environments/<name>.yaml`` with ``overrides`` applied."""
    check_environment(name)
    path = ENVIRONMENTS_DIR / f"{name}.yaml"
    env = load_config(Environment, path, overrides=overrides)
    if env.name != name:
        raise UserError(f"{path}: name {env.name!r} must match the file name {name!r}")
    return env
