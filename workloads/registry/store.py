"""The MLflow side of the registry: the client, runs, and the eval scores logged to a run."""

from __future__ import annotations

from typing import Any

from tuneops.core.errors import UserError
from workloads.models.refs import registry_uri
from workloads.models.registry import RegisteredVersion, lookup_version, registry_client
from workloads.registry.config import RegistryConfig


def client_for(config: RegistryConfig) -> Any:
    """A client for the config's store, also made the active store for ``mlflow``."""
    import mlflow

    uri = config.tracking.resolved_uri
    mlflow.set_tracking_uri(uri)
    return registry_client(uri)


def mlflow_error() -> type[Exception]:
    from mlflow.exceptions import MlflowException

    return MlflowException


def get_run(client: Any, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except mlflow_error() as exc:
        raise UserError(f"MLflow run {run_id!r} not found at {client.tracking_uri}") from exc


def alias_version(client: Any, name: str, alias: str) -> RegisteredVersion | None:
    """The version ``models:/name@alias`` names now; None when the alias is not set."""
    return lookup_version(registry_uri(name, alias=alias), client=client)


def run_scores(run: Any, label: str, split: str) -> dict[str, float]:
    """Overall eval metrics of one model (``label``) logged to ``run``."""
    prefix = f"eval.{label}.{split}."
    return {
        key[len(prefix) :]: value
        for key, value in run.data.metrics.items()
        if key.startswith(prefix) and "." not in key[len(prefix) :]
    }
