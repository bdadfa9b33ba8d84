"""Question/answer pairs about Kubernetes resource kinds and their fields.

The definitions come from the OpenAPI-derived JSON schemas that the installed
``kubernetes-validate`` package ships (one folder per Kubernetes minor version, with every
definition in ``_definitions.json``). For each selected kind: one pair describing the kind
(API version, purpose, required fields) and up to ``fields_per_kind`` pairs about the fields of
its spec (or of the object itself when it has no spec: ConfigMap, Secret, RBAC rules).
The output is deterministic: same package version and config, same pairs.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from tuneops.core.errors import MissingToolError, UserError
from workloads.data.config import K8sApiSource, OnError
from workloads.data.records import StageResult, chat_record, qa_messages

_PREFIX = "io.k8s.api."
_SKIP_FIELDS = {"apiVersion", "kind", "metadata", "status"}
_KIND_QUESTIONS = (
    "What is a Kubernetes {kind} and which API version serves it?",
    "Explain the Kubernetes {kind} resource ({api_version}).",
    "What does a {kind} object do in Kubernetes, and what must its manifest contain?",
)
_FIELD_QUESTIONS = (
    "What does the `{path}` field of a Kubernetes {kind} do?",
    "In a {kind} manifest ({api_version}), what is `{path}` for?",
    "How is `{path}` used in a Kubernetes {kind}?",
)


def schema_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError("the kubernetes-validate package is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name.split("-")[0]))


def available_versions() -> list[str]:
    root = schema_root()
    names = [
        p.name.removeprefix("v").removesuffix("-local")
        for p in root.iterdir()
        if p.is_dir() and p.name.endswith("-local")
    ]
    return sorted(names, key=_version_key)


@lru_cache(maxsize=4)
def load_definitions(version: str = "latest") -> tuple[str, dict[str, Any]]:
    versions = available_versions()
    if not versions:
        raise MissingToolError(f"no schemas found under {schema_root()}; reinstall the package")
    chosen = versions[-1] if version == "latest" else version.removeprefix("v")
    if chosen not in versions:
        raise UserError(
            f"schema_version {version!r} is not shipped by kubernetes-validate; "
            f"choose one of: latest, {', '.join(versions)}"
        )
    path = schema_root() / f"v{chosen}-local" / "_definitions.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return chosen, data.get("$defs") or data.get("definitions") or {}


def _is_stable(version: str) -> bool:
    return re.fullmatch(r"v\d+", version) is not None


def _kinds(defs: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(api_version, kind, definition)`` for every top-level kind (no lists)."""
    found = []
    for name, definition in defs.items():
        gvks = definition.get("x-kubernetes-group-version-kind") or []
        if not name.startswith(_PREFIX) or len(gvks) != 1:
            continue
        gvk = gvks[0]
        if gvk["kind"].endswith("List"):
            continue
        api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
        found.append((api_version, gvk["kind"], definition))
    return found


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return _ref_name(prop["$ref"]).rsplit(".", 1)[-1]
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "object")
    if kind == "array":
        return f"list of {_type_of(prop.get('items') or {})}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of string to {_type_of(prop['additionalProperties'])}"
    return str(kind or "object")


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text or "").strip()
    text = re.sub(r"More info: \S+", "", text).strip()
    return text


def _select(kinds: list[tuple[str, str, dict]], src: K8sApiSource) -> list[tuple[str, str, dict]]:
    if src.kinds:
        chosen = []
        for wanted in src.kinds:
            matches = [
                k
                for k in kinds
                if wanted in (k[1], f"{k[0]}/{k[1]}") and (not src.stable_only or _stable(k[0]))
            ]
            if not matches:
                matches = [k for k in kinds if wanted in (k[1], f"{k[0]}/{k[1]}")]
            if not matches:
                raise UserError(
                    f"source {src.name!r}: unknown Kubernetes kind {wanted!r}; use a kind name "
                    "such as Deployment or group/version/Kind such as apps/v1/Deployment"
                )
            # Prefer the most stable version when the same kind is served by several.
            matches.sort(key=lambda k: (not _stable(k[0]), k[0]))
            if matches[0] not in chosen:
                chosen.append(matches[0])
        return chosen[: src.max_kinds]
    pool = [k for k in kinds if not src.stable_only or _stable(k[0])]
    pool.sort(key=lambda k: (k[0].count("/"), k[0], k[1]))
    return pool[: src.max_kinds]


def _stable(api_version: str) -> bool:
    return _is_stable(api_version.rsplit("/", 1)[-1])


def _field_answer(kind: str, path: str, prop: dict[str, Any], required: bool) -> str:
    parts = [f"`{path}` is a field of type {_type_of(prop)} in a {kind}."]
    description = _clean(prop.get("description", ""))
    if description:
        parts.append(description if description.endswith(".") else description + ".")
    enum = [e for e in prop.get("enum") or [] if e is not None]
    if enum:
        parts.append("Allowed values: " + ", ".join(f"`{e}`" for e in enum) + ".")
    parts.append("It is required." if required else "It is optional.")
    return " ".join(parts)


def _kind_answer(api_version: str, kind: str, definition: dict, fields_of: dict, where: str) -> str:
    description = _clean(definition.get("description", "")) or f"{kind} is a Kubernetes resource."
    lines = [
        f"A {kind} is served by the Kubernetes API as `apiVersion: {api_version}`, `kind: {kind}`.",
        description if description.endswith(".") else description + ".",
    ]
    required = [f for f in fields_of.get("required") or [] if f not in _SKIP_FIELDS]
    names = [f for f in (fields_of.get("properties") or {}) if f not in _SKIP_FIELDS]
    if names:
        lines.append(
            f"Main fields of its {where}: " + ", ".join(f"`{n}`" for n in names[:12]) + "."
        )
    if required:
        lines.append(f"Required in its {where}: " + ", ".join(f"`{n}`" for n in required) + ".")
    return " ".join(lines)


def ingest_k8s_api(src: K8sApiSource, on_error: OnError) -> StageResult:
    version, defs = load_definitions(src.schema_version)
    selected = _select(_kinds(defs), src)
    records: list[dict[str, Any]] = []
    source_label = f"kubernetes-validate v{version}"
    seen = 0
    for api_version, kind, definition in selected:
        spec_prop = (definition.get("properties") or {}).get("spec")
        if spec_prop and "$ref" in spec_prop:
            fields_of = defs.get(_ref_name(spec_prop["$ref"]), {})
            prefix, where = "spec.", "spec"
        else:
            fields_of, prefix, where = definition, "", "object"
        seen += 1
        qi = len(records)
        question = _KIND_QUESTIONS[qi % len(_KIND_QUESTIONS)].format(
            kind=kind, api_version=api_version
        )
        records.append(
            chat_record(
                f"{src.name}:{api_version}/{kind}",
                qa_messages(
                    question, _kind_answer(api_version, kind, definition, fields_of, where)
                ),
                f"{source_label}: {api_version}/{kind}",
                src.category,
            )
        )
        required = set(fields_of.get("required") or [])
        props = [
            (n, p)
            for n, p in (fields_of.get("properties") or {}).items()
            if n not in _SKIP_FIELDS and _clean(p.get("description", ""))
        ]
        # Required fields first, then the rest in schema order.
        props.sort(key=lambda item: item[0] not in required)
        for name, prop in props[: src.fields_per_kind]:
            seen += 1
            path = f"{prefix}{name}"
            qi = len(records)
            question = _FIELD_QUESTIONS[qi % len(_FIELD_QUESTIONS)].format(
                kind=kind, api_version=api_version, path=path
            )
            records.append(
                chat_record(
                    f"{src.name}:{api_version}/{kind}/{path}",
                    qa_messages(question, _field_answer(kind, path, prop, name in required)),
                    f"{source_label}: {api_version}/{kind}",
                    src.category,
                )
            )
    capped = records[: src.max_pairs]
    stats = {"items": len(capped), "kinds": len(selected), "schema_version": version}
    if len(records) > len(capped):
        stats["not_generated_over_max_pairs"] = len(records) - len(capped)
    return StageResult(capped, [], stats)
