"""Validate rendered manifests before anything is written.

- Custom resources (KServe, Gateway API, Envoy Gateway, cert-manager, KEDA, Argo CD, Kubeflow
  Trainer, Karpenter, Prometheus Operator) go through the CRD schemas of the pinned releases,
  vendored under ``workloads/deploy/schemas`` (``workloads.deploy.crd_schema``), strictly: an
  unknown field is an error, where the API server would drop it without a word.
- Core Kubernetes kinds go through ``kubernetes-validate`` (the API server's JSON schemas for
  the cluster's Kubernetes version), strict as well.

Every failure becomes one ``UserError`` naming the manifest and the path of the bad field.
"""

from __future__ import annotations

from typing import Any

from tuneops.core.errors import UserError
from workloads.deploy import crd_schema


def _group(manifest: dict[str, Any]) -> str:
    api = manifest.get("apiVersion", "")
    return api.rsplit("/", 1)[0] if "/" in api else ""


def is_core_group(group: str) -> bool:
    """Groups served by Kubernetes itself: the core group, ``apps``, ``*.k8s.io`` (except the
    add-on APIs vendored as CRDs, such as Gateway API)."""
    if group in crd_schema.vendored_groups():
        return False
    return group == "" or "." not in group or group.endswith(".k8s.io")


def validate_custom(manifest: dict[str, Any], label: str) -> str:
    """Check a custom resource against its vendored CRD schema; return the schema's name."""
    return crd_schema.validate_custom_resource(manifest, label)


def validate_trainjob(manifest: dict[str, Any], label: str) -> None:
    """Check a TrainJob against Kubeflow Trainer's CRD schema."""
    if manifest.get("kind") != "TrainJob":
        raise UserError(f"{label}: expected a TrainJob, got {manifest.get('kind')!r}")
    validate_custom(manifest, label)


def validate_core(manifest: dict[str, Any], label: str, kubernetes_version: str) -> None:
    """Check a core Kubernetes kind with kubernetes-validate (strict: no unknown fields)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) if hasattr(exc, "path") else ""
        raise UserError(f"{label}: invalid {manifest.get('kind')}: {where} {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise UserError(f"{label}: no schema for {manifest.get('kind')}: {exc}") from exc


def validate_manifest(manifest: dict[str, Any], label: str, kubernetes_version: str) -> str:
    """Validate one manifest by its apiVersion; return which schema accepted it."""
    if not isinstance(manifest, dict):
        raise UserError(f"{label}: a manifest must be a mapping, got {type(manifest).__name__}")
    if is_core_group(_group(manifest)):
        validate_core(manifest, label, kubernetes_version)
        return f"kubernetes-validate {kubernetes_version}"
    return f"CRD schema {validate_custom(manifest, label)}"
