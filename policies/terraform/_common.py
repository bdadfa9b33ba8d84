"""Helpers shared by the Terraform checks (checkov hands every attribute over as a list)."""

from __future__ import annotations

import json
from typing import Any

REQUIRED_TAGS = ("environment", "owner", "cost-center")


def first(value: Any) -> Any:
    """checkov wraps attribute values in one-element lists; unwrap them."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def tags_of(conf: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in ("tags_all", "tags"):
        value = first(conf.get(key))
        if isinstance(value, dict):
            merged.update(value)
    return merged


def environment_of(conf: dict[str, Any]) -> str | None:
    env = tags_of(conf).get("environment")
    return first(env) if env is not None else None


def as_policy(value: Any) -> dict[str, Any] | None:
    value = first(value)
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def listify(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
