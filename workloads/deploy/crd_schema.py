"""Validate custom resources against the CRD schemas vendored under ``schemas/``.

``scripts/vendor_crds.py`` writes each CRD's ``openAPIV3Schema``, unchanged, to
``schemas/<group>/<Kind>.<version>.json``; here it becomes a JSON Schema that ``jsonschema``
checks strictly:

- an object schema refuses properties it does not declare, unless it carries
  ``x-kubernetes-preserve-unknown-fields: true`` (the API server would prune them silently);
- ``x-kubernetes-int-or-string`` accepts an integer or a string, ``nullable`` accepts null;
- list types ``set`` and ``map`` refuse duplicate items or duplicate keys, as the server does;
- ``metadata`` is checked as the API server checks ObjectMeta's shape: a DNS-subdomain name, a
  DNS-label namespace, label keys and values, string annotations, and nothing else.

Not checked here: CEL rules (``x-kubernetes-validations``) and string formats.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_QUALIFIED = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"

OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": _DNS_SUBDOMAIN},
        "generateName": {"type": "string", "maxLength": 248},
        "namespace": {"type": "string", "maxLength": 63, "pattern": _DNS_LABEL},
        "labels": {
            "type": "object",
            "propertyNames": {"maxLength": 317, "pattern": _QUALIFIED + _LABEL_NAME},
            "additionalProperties": {
                "type": "string",
                "maxLength": 63,
                "pattern": "^(" + _LABEL_NAME.removesuffix("$") + ")?$",
            },
        },
        "annotations": {
            "type": "object",
            "propertyNames": {"maxLength": 317, "pattern": _QUALIFIED + _LABEL_NAME},
            "additionalProperties": {"type": "string"},
        },
        "finalizers": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "additionalProperties": False,
                "properties": {
                    **{k: {"type": "string"} for k in ("apiVersion", "kind", "name", "uid")},
                    "controller": {"type": "boolean"},
                    "blockOwnerDeletion": {"type": "boolean"},
                },
            },
        },
    },
}
# The fields every embedded resource (x-kubernetes-embedded-resource) has implicitly.
_EMBEDDED = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {k: v for k, v in OBJECT_META.items() if k != "anyOf"},  # a name is optional
}


def _python_pattern(pattern: str) -> str:
    """An RE2 pattern as Python's ``re`` takes it: inline global flags move to the front."""
    try:
        re.compile(pattern)
        return pattern
    except re.error:
        moved = re.sub(r"^\^\(\?([aiLmsux]+)\)", r"(?\1)^", pattern)
        re.compile(moved)  # still invalid: the vendored schema needs a look
        return moved


def _strict(node: dict[str, Any]) -> dict[str, Any]:
    """One structural-schema node (and everything below it) as a strict JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _strict(value)
        elif key == "pattern":
            out[key] = _python_pattern(value)
        elif not key.startswith("x-kubernetes-"):
            out[key] = value  # allOf/anyOf/oneOf/not only refer to fields declared above
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-embedded-resource"):
        out["properties"] = {**_EMBEDDED, **out.get("properties", {})}
    is_object = out.get("type") == "object" or "properties" in out
    closed = not node.get("x-kubernetes-preserve-unknown-fields")
    if is_object and closed and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("x-kubernetes-list-type") == "map" and node.get("x-kubernetes-list-map-keys"):
        out["x-list-map-keys"] = node["x-kubernetes-list-map-keys"]
    return out


def strict_schema(schema: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """A vendored ``openAPIV3Schema`` as the JSON Schema a manifest of that kind must meet."""
    out = _strict(schema)
    properties = dict(out.get("properties", {}))
    properties["apiVersion"] = {"const": api_version}
    properties["kind"] = {"const": kind}
    properties["metadata"] = OBJECT_META
    out["properties"] = properties
    out["required"] = sorted({*out.get("required", []), "apiVersion", "kind", "metadata"})
    out["additionalProperties"] = False
    return out


def _list_map_keys(validator, keys, instance, schema):
    """``x-kubernetes-list-type: map``: no two items may share their key fields."""
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "array"):
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        identity = json.dumps([item.get(k) for k in keys], sort_keys=True)
        if identity in seen:
            named = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield ValidationError(f"items {seen[identity]} and {index} share the key {named}")
        seen.setdefault(identity, index)


@lru_cache(maxsize=1)
def vendored() -> dict[tuple[str, str, str], Path]:
    """(group, version, kind) -> schema file, for every vendored schema."""
    found = {}
    for path in sorted(SCHEMAS_DIR.glob("*/*.json")):
        kind, version = path.name.removesuffix(".json").split(".", 1)
        found[(path.parent.name, version, kind)] = path
    return found


def vendored_groups() -> set[str]:
    return {group for group, _, _ in vendored()}


def vendored_kinds(group: str | None = None) -> str:
    """The vendored kinds, by apiVersion (of ``group`` alone where it has any)."""
    keys = sorted(k for k in vendored() if group in (None, k[0]))
    if not keys:
        return vendored_kinds()
    by_api: dict[str, list[str]] = {}
    for g, v, k in keys:
        by_api.setdefault(f"{g}/{v}", []).append(k)
    return "; ".join(f"{api} {', '.join(kinds)}" for api, kinds in by_api.items())


@lru_cache(maxsize=1)
def _validator_class():
    from jsonschema import Draft202012Validator
    from jsonschema.validators import extend

    return extend(Draft202012Validator, {"x-list-map-keys": _list_map_keys})


def compile_schema(schema: dict[str, Any], api_version: str, kind: str):
    """A jsonschema validator of ``kind`` manifests from an ``openAPIV3Schema``."""
    return _validator_class()(strict_schema(schema, api_version, kind))


@lru_cache(maxsize=64)
def validator_for(api_version: str, kind: str):
    """The validator of the vendored schema for ``apiVersion`` and ``kind``; UserError when
    none is vendored."""
    group, _, version = api_version.rpartition("/")
    path = vendored().get((group, version, kind))
    if path is None:
        raise UserError(
            f"no vendored CRD schema for {api_version} {kind}; "
            f"schemas exist for {vendored_kinds(group)}"
        )
    return compile_schema(json.loads(path.read_text()), api_version, kind)


def _json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error) -> tuple[str, str]:
    """(JSON path of the bad field, why) for one jsonschema error."""
    path = list(error.absolute_path)
    check, expected, instance = error.validator, error.validator_value, error.instance
    if check == "additionalProperties" and expected is False:
        declared = set(error.schema.get("properties", {}))
        extra = sorted(set(instance) - declared)
        return _json_path([*path, extra[0]]), "unknown field (the CRD schema does not declare it)"
    if check == "required":
        missing = [name for name in expected if name not in instance]
        return _json_path([*path, missing[0]]), "required field missing"
    if check == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        return _json_path(path), f"expected {wanted}, got {_short(instance)}"
    if check == "enum":
        allowed = ", ".join(_short(v) for v in expected)
        return _json_path(path), f"{_short(instance)} is not one of: {allowed}"
    if check == "anyOf" and all(set(branch) == {"type"} for branch in expected):
        wanted = " or ".join(branch["type"] for branch in expected)
        return _json_path(path), f"expected {wanted}, got {_short(instance)}"
    if check == "const":
        return _json_path(path), f"must be {_short(expected)}, got {_short(instance)}"
    if check in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _json_path(path), f"{_short(instance)} breaks {check} {expected}"
    if check == "pattern":
        return _json_path(path), f"{_short(instance)} does not match {expected}"
    message = error.message
    return _json_path(path), message if len(message) <= 160 else message[:157] + "..."


def check(validator, manifest: dict[str, Any], label: str) -> None:
    """Raise one UserError naming the first bad field that ``validator`` finds, if any."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(manifest))
    if error is not None:
        where, why = _describe(error)
        raise UserError(f"{label}: invalid {manifest.get('kind')} at {where}: {why}")


def validate_custom_resource(manifest: dict[str, Any], label: str) -> str:
    """Check one custom resource against its vendored schema; return the schema file's name."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    try:
        validator = validator_for(api_version, kind)
    except UserError as exc:
        raise UserError(f"{label}: {exc}") from exc
    check(validator, manifest, label)
    group, _, version = api_version.rpartition("/")
    return vendored()[(group, version, kind)].relative_to(SCHEMAS_DIR).as_posix()
