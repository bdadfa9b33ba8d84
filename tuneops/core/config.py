"""Typed YAML configuration with per-environment overlays and command-line overrides.

A config file ``configs/train/default.yaml`` may have an overlay for an environment in
``configs/train/default.<env>.yaml``; the overlay is deep-merged over the base. ``key.sub=value``
overrides (values parsed as YAML) are applied last. The merged mapping is validated by a pydantic
model, and a validation failure becomes one ``UserError`` naming the file and every bad field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tuneops.core.environments import check_environment
from tuneops.core.errors import UserError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``data``.

    A number indexes a list: ``sources.0.max_pairs=40`` sets the first source's cap.
    """
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node: Any = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            slot = _slot(node, part, item)
            if isinstance(node, dict) and slot not in node:
                node[slot] = {}
            node = node[slot]
        node[_slot(node, parts[-1], item)] = value
    return data


def _slot(node: Any, part: str, item: str) -> str | int:
    """The key (a mapping) or index (a list) that ``part`` names in ``node``."""
    if isinstance(node, dict):
        return part
    if isinstance(node, list):
        try:
            index = int(part)
        except ValueError:
            raise UserError(f"override {item!r}: {part!r} is in a list; give an index") from None
        if not -len(node) <= index < len(node):
            raise UserError(
                f"override {item!r}: index {index} is outside the list's {len(node)} item(s)"
            )
        return index
    raise UserError(f"override {item!r}: cannot go into {part!r}, the value there is not a mapping")


def option_overrides(overrides: list[str] | None, options: dict[str, Any]) -> list[str]:
    """The ``--set`` overrides, then ``key=value`` for every command-line option that was given
    (not None), written as YAML (``true``, ``[a,b]``): an option wins over ``--set``."""
    merged = list(overrides or [])
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | tuple):
            text = f"[{','.join(value)}]"
        else:
            text = str(value)
        merged.append(f"{key}={text}")
    return merged


def overlay_path(path: Path, env: str | None) -> Path | None:
    """The ``<stem>.<env>.yaml`` overlay beside ``path``, if that environment has one.

    ``env`` must be a known environment (a misspelt name is an error, not a silent no-op);
    a known environment without an overlay file simply uses the base config.
    """
    if not env:
        return None
    check_environment(env)
    candidate = path.with_name(f"{path.stem}.{env}{path.suffix}")
    return candidate if candidate.is_file() else None


def format_validation_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        problems.append(f"{loc}: {err['msg']}")
    return f"{source}: invalid config: " + "; ".join(problems)


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(source, exc)) from exc


def load_config(
    model: type[M],
    path: str | Path,
    *,
    env: str | None = None,
    overrides: list[str] | None = None,
) -> M:
    """Read ``path``, merge the ``env`` overlay and ``overrides``, and validate into ``model``."""
    path = Path(path)
    data = read_yaml(path)
    sources = [str(path)]
    extra = overlay_path(path, env)
    if extra is not None:
        data = deep_merge(data, read_yaml(extra))
        sources.append(str(extra))
    data = apply_overrides(data, overrides)
    return validate(model, data, " + ".join(sources))
