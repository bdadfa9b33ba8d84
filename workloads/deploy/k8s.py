"""Small pieces every rendered manifest shares: labels, names and the SDK serializer."""

from __future__ import annotations

from typing import Any

from workloads.deploy.config import DeployConfig

PART_OF = "tuneops"


def sanitize(obj: Any) -> dict[str, Any]:
    """An SDK object as the API's mapping: camelCase keys, unset fields dropped (kserve's
    generated client does this for its own classes and the Kubernetes ones nested in them)."""
    from kserve.api_client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def labels(cfg: DeployConfig, role: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": cfg.serving.name,
        "app.kubernetes.io/part-of": PART_OF,
        "tuneops.io/env": cfg.env,
        "tuneops.io/role": role,
    }


def canary_name(cfg: DeployConfig) -> str:
    return f"{cfg.serving.name}-canary"


def predictor_names(cfg: DeployConfig) -> list[str]:
    """The InferenceServices that may serve the environment (stable and canary); KServe labels
    their pods ``serving.kserve.io/inferenceservice: <name>``."""
    return [cfg.serving.name, canary_name(cfg)]


def metadata(cfg: DeployConfig, name: str, role: str, namespace: str | None = None) -> dict:
    return {
        "name": name,
        "namespace": namespace or cfg.serving.namespace,
        "labels": labels(cfg, role),
    }
