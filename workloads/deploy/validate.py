"""Validate rendered manifests before anything is written.

- Core Kubernetes kinds go through ``kubernetes-validate`` (the API server's JSON schemas).
- KServe kinds go through the kserve SDK's model classes, walked strictly: every key must be
  a field the class declares, every nested object is built through its class (whose setters
  check required fields and enums).
- Kubeflow Trainer kinds go through the ``kubeflow-trainer-api`` pydantic models, and the
  round trip must keep every key (the models ignore unknown keys, a typo would vanish).
- Argo CD Applications and Gateway API HTTPRoutes have no Python SDK: typed models of the
  fields this project renders (``workloads.deploy.crds``) stand in, with unknown keys refused.

Every failure becomes one ``UserError`` naming the manifest and the path of the bad field.
"""

from __future__ import annotations

import datetime
from typing import Any

from tuneops.core.errors import UserError

_PRIMITIVES = {
    "str": str,
    "int": int,
    "bool": bool,
    "float": (int, float),
    "bytes": (str, bytes),
    "object": object,
}


def _lookup_class(name: str):
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        cls = getattr(module, name, None)
        if cls is not None:
            return cls
    raise UserError(f"unknown model class {name} in the SDK schemas")


def _build(data: Any, type_name: str, path: str) -> Any:
    """Construct ``type_name`` from ``data`` strictly; raise ValueError with the field path."""
    if data is None:
        return None
    if type_name.startswith(("list[", "List[")):
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list")
        inner = type_name[5:-1]
        return [_build(item, inner, f"{path}[{i}]") for i, item in enumerate(data)]
    if type_name.startswith(("dict(", "Dict[")):
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping")
        inner = type_name[5:-1].split(", ", 1)[1]
        return {k: _build(v, inner, f"{path}.{k}") for k, v in data.items()}
    if type_name == "ResourceQuantity":
        if isinstance(data, bool) or not isinstance(data, (str, int, float)):
            raise ValueError(f"{path}: expected a quantity such as 2, 500m or 4Gi")
        return data
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if type_name == "int" and isinstance(data, bool):
            raise ValueError(f"{path}: expected an integer")
        if not isinstance(data, expected):
            raise ValueError(f"{path}: expected {type_name}, got {type(data).__name__}")
        return data
    if type_name in ("datetime", "date"):
        if not isinstance(data, (str, datetime.date)):
            raise ValueError(f"{path}: expected a timestamp")
        return data
    cls = _lookup_class(type_name)
    if not getattr(cls, "openapi_types", None):
        return data  # free-form (e.g. IntOrString, Quantity): checked by the server
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object ({type_name})")
    by_key = {v: k for k, v in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {', '.join(unknown)} for {type_name}")
    kwargs = {
        by_key[key]: _build(value, cls.openapi_types[by_key[key]], f"{path}.{key}")
        for key, value in data.items()
    }
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def validate_kserve(manifest: dict[str, Any], label: str) -> None:
    """Check an InferenceService against the kserve SDK's classes."""
    kinds = {"InferenceService": "V1beta1InferenceService"}
    cls_name = kinds.get(manifest.get("kind", ""))
    if cls_name is None:
        raise UserError(f"{label}: no SDK model for kind {manifest.get('kind')!r}")
    try:
        _build(manifest, cls_name, manifest["kind"])
    except ValueError as exc:
        raise UserError(f"{label}: invalid {manifest['kind']}: {exc}") from exc


def validate_trainjob(manifest: dict[str, Any], label: str) -> None:
    """Check a TrainJob against Kubeflow Trainer's pydantic models; no key may be dropped."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    from pydantic import ValidationError

    try:
        model = TrainerV1alpha1TrainJob.from_dict(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"{label}: invalid TrainJob: {where}: {first['msg']}") from exc
    lost = _missing_keys(manifest, model.to_dict())
    if lost:
        raise UserError(f"{label}: invalid TrainJob: unknown field(s) {', '.join(lost)}")


def _missing_keys(original: Any, roundtrip: Any, path: str = "") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(roundtrip, dict):
            return [path or "<root>"]
        out = []
        for key, value in original.items():
            sub = f"{path}.{key}" if path else key
            if key not in roundtrip:
                out.append(sub)
            else:
                out.extend(_missing_keys(value, roundtrip[key], sub))
        return out
    if isinstance(original, list) and isinstance(roundtrip, list):
        out = []
        for i, (a, b) in enumerate(zip(original, roundtrip, strict=False)):
            out.extend(_missing_keys(a, b, f"{path}[{i}]"))
        return out
    return []


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
    """Validate one manifest by its apiVersion; return which validator accepted it."""
    from workloads.deploy import crds

    api = manifest.get("apiVersion", "")
    group = api.split("/", 1)[0] if "/" in api else ""
    if group == "serving.kserve.io":
        validate_kserve(manifest, label)
        return "kserve SDK"
    if group == "trainer.kubeflow.org":
        validate_trainjob(manifest, label)
        return "kubeflow-trainer-api"
    if group in crds.VALIDATORS:
        crds.validate(manifest, label)
        return "typed CRD model"
    validate_core(manifest, label, kubernetes_version)
    return "kubernetes-validate"
