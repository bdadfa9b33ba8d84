"""What serves in an environment: the pinned model versions of a release and the ConfigMap
that keeps them beside the manifests, so a rollback needs no other source."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from tuneops.core.config import StrictModel
from workloads.deploy.config import DeployConfig
from workloads.deploy.k8s import labels


class ModelVersion(StrictModel):
    """One deployable model: what was asked for and the pinned location it resolved to."""

    ref: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    storage_uri: str
    # Set when the version is served as its LoRA adapter on a registered base model
    # (serving.huggingface.lora): the base's location and the adapter's.
    base_uri: str | None = None
    adapter_uri: str | None = None

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
            "labels": labels(cfg, "release-state"),
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
