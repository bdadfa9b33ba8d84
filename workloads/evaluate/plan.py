"""Which models an evaluation runs, each pinned to what it will load.

A ``models:/name@alias`` reference names a different version after every promotion, so it is
looked up once, here: the model is then loaded by its pinned reference (``models:/name/<n>``)
and the report names that same version. Weights and label cannot disagree, even when a
promotion lands while the evaluation runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tuneops.core.errors import UserError
from workloads.evaluate.results import CANDIDATE
from workloads.models.refs import ModelRef, parse_ref
from workloads.models.registry import lookup_version

_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class PlannedModel:
    label: str
    ref: str  # as given: what the report and the run's tags name
    load_ref: str  # what is loaded: a registry reference pinned to its version
    version: str | None = None  # the registered version, for registry references
    run_id: str | None = None  # the MLflow run that holds the model, when known


def parse_baselines(values: list[str] | None, defaults: dict[str, str]) -> dict[str, str]:
    """``--baseline`` values, each ``REF`` or ``LABEL=REF``; none given -> the config's."""
    if not values:
        return dict(defaults)
    out: dict[str, str] = {}
    for n, value in enumerate(values, 1):
        label, sep, ref = value.partition("=")
        if not sep or "://" in label or label.startswith(("models:", "runs:", "embedded:")):
            label, ref = _default_label(value, n), value
        out[label] = ref
    return out


def _default_label(ref: str, n: int) -> str:
    parsed = parse_ref(ref)
    if parsed.kind == "embedded":
        return "base"
    if parsed.is_alias:
        return str(parsed.alias)
    return f"baseline{n}"


def check_labels(baselines: dict[str, str]) -> None:
    for label in baselines:
        if not _LABEL.match(label) or label == CANDIDATE:
            raise UserError(
                f"baseline label {label!r}: use letters, digits, - or _, and not 'candidate'"
            )


def pin(label: str, ref: str, client: Any) -> PlannedModel | None:
    """``ref`` with a registry reference looked up once; None when that version does not exist."""
    parsed = parse_ref(ref)
    if not parsed.is_registry:
        return PlannedModel(label, ref, ref, run_id=parsed.run_id)
    _check_registered(parsed)
    found = lookup_version(parsed, client=client)
    if found is None:
        return None
    return PlannedModel(label, ref, found.pinned, found.version, found.run_id)


def _check_registered(parsed: ModelRef) -> None:
    if parsed.alias is None and parsed.version is None:
        raise UserError(f"model ref {parsed}: use models:/<name>@<alias> or models:/<name>/<n>")


def plan_candidate(ref: str, client: Any, run_id: str | None) -> PlannedModel:
    """The candidate, pinned; ``run_id`` (where results are logged) defaults to its own run."""
    planned = pin(CANDIDATE, ref, client)
    if planned is None:
        raise UserError(f"{ref} does not exist in the MLflow registry")
    if run_id:
        return PlannedModel(planned.label, ref, planned.load_ref, planned.version, run_id)
    return planned


def plan_baselines(
    baselines: dict[str, str], client: Any, run_id: str | None, notes: list[str]
) -> list[PlannedModel]:
    """Baselines, pinned; one that does not exist yet or is the candidate itself is skipped
    with a note."""
    planned = []
    for label, ref in baselines.items():
        model = pin(label, ref, client)
        if model is None:
            notes.append(f"baseline {label} skipped: {ref} does not exist yet")
        elif model.version is not None and run_id and model.run_id == run_id:
            notes.append(f"baseline {label} skipped: {ref} is the candidate itself")
        else:
            planned.append(model)
    return planned
