"""Typed configuration: the tooling settings and one YAML file per environment.

``configs/infra/default.yaml`` holds the settings of the tooling (output folder, stack order,
Terraform, the local moto server). Each file in ``configs/infra/environments/`` is one
environment; adding an environment is adding a file. A command loads both once (with its
``--set`` overrides) and hands the objects down.
"""

from __future__ import annotations

import ipaddress
import math
import re
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
    """A managed node group (the system pool)."""

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


# Karpenter capacity types a NodePool may launch ("reserved" is added by capacity reservations).
CapacityType = Literal["spot", "on-demand"]


class KarpenterPool(StrictModel):
    """What every Karpenter NodePool of the config has: what it may launch, how it pays, a cost
    ceiling, its root volume, and how soon an idle or underused node goes."""

    instance_types: list[str] = Field(min_length=1)
    # In the order of preference: Karpenter launches spot first whenever spot is allowed.
    capacity_types: list[CapacityType] = Field(min_length=1)
    # On-demand capacity reservations (cr-...) the pool launches into first, as `reserved`.
    capacity_reservation_ids: list[str] = Field(default_factory=list)
    # Ceiling on what the pool may cost per hour at on-demand prices (spot costs less).
    max_hourly_usd: float = Field(gt=0)
    disk_gb: int = Field(50, ge=20)
    consolidate_after: str = Field("5m", pattern=r"^\d+(s|m|h)$")
    # Every node is replaced after this long (AMI and security updates), "Never" to keep it.
    expire_after: str = Field("720h", pattern=r"^(\d+(s|m|h)|Never)$")

    @field_validator("capacity_types")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("capacity_types lists each type once")
        return value

    @field_validator("capacity_reservation_ids")
    @classmethod
    def _reservations(cls, value: list[str]) -> list[str]:
        for rid in value:
            if not re.fullmatch(r"cr-[0-9a-f]{8,17}", rid):
                raise ValueError(f"{rid!r} is not a capacity reservation id (cr-...)")
        return value

    def _bound(self) -> tuple[int, float, str]:
        """(most units, upper bound of one unit's on-demand hourly price, unit name)."""
        raise NotImplementedError

    @property
    def limit(self) -> int:
        """The pool's limit in its unit: the configured most, or fewer when the cost ceiling
        buys fewer (each unit priced at the dearest listed type's on-demand price per unit)."""
        most, unit_hourly_usd, unit = self._bound()
        affordable = math.floor(self.max_hourly_usd / unit_hourly_usd + 1e-9)
        if affordable < 1:
            raise ValueError(
                f"max_hourly_usd {self.max_hourly_usd} buys no {unit} at {unit_hourly_usd}/h"
            )
        return min(most, affordable)

    @model_validator(mode="after")
    def _ceiling(self):
        _ = self.limit  # a ceiling that buys nothing is an error
        return self


class CpuNodePool(KarpenterPool):
    """The general-purpose pool: everything that tolerates no taint and is not a controller."""

    max_vcpus: int = Field(ge=1)
    # Upper bound of the on-demand price of one vCPU-hour among instance_types (USD).
    vcpu_hourly_usd: float = Field(gt=0)

    def _bound(self) -> tuple[int, float, str]:
        return self.max_vcpus, self.vcpu_hourly_usd, "vCPU"


class GpuNodePool(KarpenterPool):
    """A GPU pool: tainted nvidia.com/gpu=true:NoSchedule, limited in GPUs and in cost."""

    name: str = Field(pattern=r"^gpu-[a-z0-9-]+$")
    max_gpus: int = Field(ge=1)
    # Upper bound of the on-demand price of one GPU-hour among instance_types (USD).
    gpu_hourly_usd: float = Field(gt=0)

    def _bound(self) -> tuple[int, float, str]:
        return self.max_gpus, self.gpu_hourly_usd, "GPU"


class KarpenterConfig(StrictModel):
    namespace: str = "kube-system"
    service_account: str = "karpenter"
    # EKS optimized AMI family and release (al2023@vYYYYMMDD pins one; @latest follows AWS).
    ami_alias: str = Field("al2023@latest", pattern=r"^al2023@(latest|v\d{8})$")
    # Seconds an interruption message stays in the queue (the upstream default).
    queue_retention_s: int = Field(300, ge=60, le=1209600)
    cpu_pool: CpuNodePool
    gpu_pools: list[GpuNodePool] = Field(default_factory=list)

    @field_validator("gpu_pools")
    @classmethod
    def _unique_names(cls, value: list[GpuNodePool]) -> list[GpuNodePool]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError("gpu_pools names must be unique")
        return value


class ClusterConfig(StrictModel):
    name: str
    version: str = Field(pattern=r"^1\.\d+$")
    endpoint_public_access: bool
    public_access_cidrs: list[str] = Field(default_factory=list)
    log_types: list[str] = Field(
        default_factory=lambda: ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    log_retention_days: int = Field(365, ge=1)
    # EKS managed add-ons: name -> version (for the cluster version above).
    addons: dict[str, str]
    # Create the add-ons above (their IAM roles are created either way).
    managed_addons: bool = True
    # The managed node group that runs Karpenter and the other controllers (tainted
    # CriticalAddonsOnly); every other node comes from Karpenter.
    system_pool: NodePool
    karpenter: KarpenterConfig
    # EKS Pod Identity associations for the controllers' roles (Karpenter, load balancer
    # controller, EBS CSI driver).
    pod_identity: bool = True
    # EKS access entries (authentication mode API): how Karpenter's nodes join the cluster.
    access_entries: bool = True

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
