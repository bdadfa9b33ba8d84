"""Finding pod specs and containers in any workload kind, CRDs included (InferenceService,
TrainJob, ...): the checks walk the manifest instead of knowing every schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Workload kinds the checks apply to (built-in controllers and the CRDs the project renders).
WORKLOAD_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "InferenceService",
    "TrainJob",
    "TrainingRuntime",
    "ClusterTrainingRuntime",
    "PyTorchJob",
)

CONTAINER_LISTS = ("containers", "initContainers")


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping that holds a list of containers (a pod spec, or KServe's predictor)."""
    if isinstance(node, dict):
        if any(isinstance(node.get(k), list) for k in CONTAINER_LISTS):
            yield node
        for key, value in node.items():
            if key in CONTAINER_LISTS:
                continue
            yield from pod_specs(value)
    elif isinstance(node, list):
        for item in node:
            yield from pod_specs(item)


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in CONTAINER_LISTS:
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                yield container


def kserve_models(node: Any) -> Iterator[dict[str, Any]]:
    """KServe's ``predictor.model`` block: a container by another name."""
    if isinstance(node, dict):
        predictor = node.get("predictor")
        if isinstance(predictor, dict) and isinstance(predictor.get("model"), dict):
            yield predictor
        for value in node.values():
            yield from kserve_models(value)
    elif isinstance(node, list):
        for item in node:
            yield from kserve_models(item)


def workload_units(conf: dict[str, Any]) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(pod-level spec, its containers) for every pod the manifest would create."""
    spec = conf.get("spec") or {}
    for pod in pod_specs(spec):
        yield pod, list(containers(pod))
    for predictor in kserve_models(spec):
        yield predictor, [predictor["model"]]


def gpu_count(container: dict[str, Any]) -> int:
    resources = container.get("resources") or {}
    total = 0
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get("nvidia.com/gpu")
        if value is not None:
            try:
                total = max(total, int(str(value)))
            except ValueError:
                total = max(total, 1)
    return total
