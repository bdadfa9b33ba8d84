"""The services of the local platform, in the order they start (and stop in reverse).

A new service is a module in this package with a ``Service`` subclass, imported here and added
to ``build_services`` (and its name to ``infra.local.ServiceName``).

``--set`` overrides of the ``tuneops local`` commands go to the local environment file, except
those written ``platform.key.sub=value``: they go to ``configs/deploy/platform/local.yaml``
(ports, the artifacts bucket, the model server).
"""

from __future__ import annotations

from infra.config import Environment, InfraSettings
from infra.local.mlflow_server import MlflowServerService
from infra.local.model_server import ModelServerService
from infra.local.moto import MotoService
from infra.local.postgres import LocalPlatformSettings, PostgresService, load_platform_settings
from infra.local.service import Service

PLATFORM_PREFIX = "platform."


def split_overrides(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """The overrides of the environment file, and those of the platform file (prefix removed)."""
    environment, platform = [], []
    for item in overrides or []:
        if item.startswith(PLATFORM_PREFIX):
            platform.append(item.removeprefix(PLATFORM_PREFIX))
        else:
            environment.append(item)
    return environment, platform


def build_services(
    env: Environment,
    settings: InfraSettings,
    platform: LocalPlatformSettings | None = None,
) -> dict[str, Service]:
    """One instance of every service, by name in start order, wired to the local environment
    ``env``: moto on its endpoint, MLflow's artifacts in its bucket on that endpoint."""
    platform = platform or load_platform_settings()
    moto = MotoService(endpoint=env.local_endpoint, seed=settings.local.moto_seed)
    postgres = PostgresService(settings=platform)
    mlflow = MlflowServerService(
        settings=platform,
        s3_endpoint=moto.url,
        region=env.region,
        postgres=postgres,
        bucket=platform.mlflow.artifacts_bucket or env.bucket_names()["artifacts"],
    )
    model_server = ModelServerService(settings=platform, mlflow=mlflow)
    return {service.name: service for service in (moto, postgres, mlflow, model_server)}
