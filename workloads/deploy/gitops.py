"""Render, promote and roll back the GitOps manifests of an environment.

``gitops/envs/<env>/`` holds everything Argo CD syncs for one environment:

- ``root-app.yaml``: the app-of-apps (bootstrapped once with ``kubectl apply``), syncing ``apps/``;
- ``apps/serving.yaml``: the Application that syncs ``serving/``;
- ``serving/``: the InferenceService(s), the weighted HTTPRoute (Standard mode) and the
  ``<name>-release`` ConfigMap holding the release state (stable, canary, previous), so
  promote and rollback need nothing but these files.

Rendering is a pure function of the deploy config and the release state: YAML with sorted keys,
no timestamps, so the same inputs give byte-identical files. Every manifest is validated, the
policy gate runs on the new files, and only then does the folder replace the old one
(atomically). Each change returns the unified diff it wrote.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.gate import run_manifest_gate
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_dir
from tuneops.core.paths import REPO_ROOT
from workloads.deploy.config import DeployConfig
from workloads.deploy.manifests import env_manifests
from workloads.deploy.release import Canary, ModelVersion, ReleaseState
from workloads.deploy.release import state_from_configmap as _state_from_cm
from workloads.deploy.validate import validate_manifest
from workloads.models.refs import parse_ref
from workloads.models.registry import lookup_version, registry_client

log = logging.getLogger(__name__)

STATE_FILE = "serving/release-state.yaml"


def gitops_root() -> Path:
    return REPO_ROOT / "gitops" / "envs"


def env_dir(cfg: DeployConfig, root: Path | None = None) -> Path:
    return (root or gitops_root()) / cfg.env


def header(cfg: DeployConfig) -> str:
    return (
        f"# Rendered by `tuneops gitops render --env {cfg.env}` "
        f"from configs/deploy/{cfg.env}.yaml.\n"
        "# Change the config or run `tuneops release ...`; edits here are overwritten.\n"
    )


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so embedded documents stay readable in review."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump_manifest(cfg: DeployConfig, manifest: dict[str, Any]) -> str:
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=100)
    return header(cfg) + body


# --- model references ------------------------------------------------------------------------


def resolve_model_version(ref: str, cfg: DeployConfig) -> ModelVersion:
    """Pin ``ref`` to a storage location KServe can download.

    ``models:/name@alias`` and ``models:/name/<version>`` are looked up in the MLflow registry
    (its storage URI; ``mlflow-artifacts:/`` maps onto the tracking server's artifact bucket);
    ``s3://`` URIs are taken as they are.
    """
    parsed = parse_ref(ref)
    if parsed.kind == "s3":
        return ModelVersion(ref=parsed.text, storage_uri=parsed.text.rstrip("/"))
    if not parsed.is_registry:
        raise UserError(
            f"model {ref!r}: give models:/<name>@<alias>, models:/<name>/<version> or s3://..."
        )
    if parsed.alias is None and parsed.version is None:
        raise UserError(f"model {ref!r}: add @<alias> or /<version>")
    from mlflow.exceptions import MlflowException

    tracking = cfg.tracking.resolved_uri
    client = registry_client(tracking)
    found = lookup_version(parsed, client=client)
    if found is None:
        raise UserError(
            f"cannot resolve {ref} in the registry at {tracking}: no such registered version"
        )
    try:
        uri = client.get_model_version_download_uri(found.name, found.version)
    except MlflowException as exc:
        raise UserError(
            f"cannot resolve {ref} in the registry at {tracking}: {exc.message}"
        ) from exc
    version = ModelVersion(
        ref=parsed.text,
        name=found.name,
        version=found.version,
        run_id=found.run_id,
        storage_uri=_storage_uri(uri, cfg),
    )
    if cfg.serving.runtime == "huggingface" and cfg.serving.huggingface.lora:
        return _with_adapter(version, client, cfg)
    return version


def _with_adapter(version: ModelVersion, client: Any, cfg: DeployConfig) -> ModelVersion:
    """Add the run's LoRA adapter and its base model's location, for vLLM's LoRA serving.

    The run that produced the version logged ``adapter/`` and tagged ``tuneops.base_model``;
    the base must itself be a registered version or an s3:// URI the cluster can read."""
    from mlflow.exceptions import MlflowException

    label = version.label()
    if not version.run_id:
        raise UserError(f"{label} has no source run, so no adapter to serve")
    try:
        run = client.get_run(version.run_id)
        adapter = client.list_artifacts(version.run_id, "adapter")
    except MlflowException as exc:
        raise UserError(f"{label}: cannot read run {version.run_id}: {exc.message}") from exc
    base_ref = run.data.tags.get("tuneops.base_model")
    if not adapter or not base_ref:
        raise UserError(
            f"{label}: run {version.run_id} has no adapter/ artifact or no tuneops.base_model "
            "tag; serve the merged model (serving.huggingface.lora: false)"
        )
    if parse_ref(base_ref).kind not in ("models", "s3"):
        raise UserError(
            f"{label}: its base {base_ref} is not a registered model or s3:// URI, so the "
            "cluster cannot download it; register the base and train from models:/..."
        )
    _check_rank(client, version, cfg)
    plain = cfg.model_copy(deep=True)
    plain.serving.huggingface.lora = False
    base = resolve_model_version(base_ref, plain)
    adapter_uri = _storage_uri(f"{run.info.artifact_uri.rstrip('/')}/adapter", cfg)
    return version.model_copy(update={"base_uri": base.storage_uri, "adapter_uri": adapter_uri})


def _check_rank(client: Any, version: ModelVersion, cfg: DeployConfig) -> None:
    """vLLM refuses an adapter whose rank is over --max-lora-rank: say so at render time."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "adapter/adapter_config.json", tmp)
        rank = json.loads(Path(path).read_text(encoding="utf-8")).get("r")
    limit = cfg.serving.huggingface.max_lora_rank
    if not isinstance(rank, int) or rank > limit:
        raise UserError(
            f"{version.label()}: adapter rank {rank} is over serving.huggingface.max_lora_rank "
            f"({limit}); raise it to a vLLM rank of at least {rank}"
        )


def _storage_uri(uri: str, cfg: DeployConfig) -> str:
    if uri.startswith("mlflow-artifacts:"):
        dest = cfg.registry.artifacts_destination
        if not dest:
            raise UserError(
                f"the registry stores the model at {uri}; set registry.artifacts_destination in "
                f"configs/deploy/{cfg.env}.yaml to the tracking server's artifact bucket"
            )
        rest = uri.split(":", 1)[1].lstrip("/")
        uri = f"{dest.rstrip('/')}/{rest}"
    if cfg.registry.require_s3 and not uri.startswith("s3://"):
        raise UserError(
            f"the model is stored at {uri}, which the {cfg.env} cluster cannot read; register it "
            "from a tracking server with S3 artifacts, or pass an s3:// URI"
        )
    return uri.rstrip("/")


# --- state -----------------------------------------------------------------------------------


def read_state(cfg: DeployConfig, root: Path | None = None) -> ReleaseState | None:
    path = env_dir(cfg, root) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return _state_from_cm(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the release state ({exc})") from exc


@dataclass
class RenderResult:
    env: str
    path: Path
    files: list[str]
    diff: str
    state: ReleaseState
    validators: dict[str, str] = field(default_factory=dict)
    policy: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.diff)


def _read_tree(path: Path) -> dict[str, str]:
    if not path.is_dir():
        return {}
    return {
        str(p.relative_to(path)): p.read_text(encoding="utf-8")
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def unified_diff(old: dict[str, str], new: dict[str, str], prefix: str) -> str:
    chunks = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, ""), new.get(name, "")
        if a == b:
            continue
        chunks.extend(
            difflib.unified_diff(
                a.splitlines(keepends=True),
                b.splitlines(keepends=True),
                fromfile=f"a/{prefix.lstrip('/')}/{name}" if name in old else "/dev/null",
                tofile=f"b/{prefix.lstrip('/')}/{name}" if name in new else "/dev/null",
            )
        )
    return "".join(chunks)


def write_env(
    cfg: DeployConfig, state: ReleaseState, *, root: Path | None = None, policy: bool = True
) -> RenderResult:
    """Build, validate, policy-check and atomically write every manifest of the environment."""
    manifests = env_manifests(cfg, state)
    validators = {}
    texts = {}
    for rel, manifest in sorted(manifests.items()):
        validators[rel] = validate_manifest(manifest, f"{cfg.env}/{rel}", cfg.kubernetes_version)
        texts[rel] = dump_manifest(cfg, manifest)
    target = env_dir(cfg, root)
    old = _read_tree(target)
    try:
        prefix = str(target.relative_to(REPO_ROOT))
    except ValueError:
        prefix = str(target)
    policy_note = "skipped"
    with atomic_dir(target) as tmp:
        for rel, text in texts.items():
            out = tmp / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        if policy:
            policy_note = run_manifest_gate([tmp / rel for rel in texts])
    return RenderResult(
        env=cfg.env,
        path=target,
        files=sorted(texts),
        diff=unified_diff(old, texts, prefix),
        state=state,
        validators=validators,
        policy=policy_note,
    )


# --- commands --------------------------------------------------------------------------------


def render(
    cfg: DeployConfig,
    *,
    model: str | None = None,
    root: Path | None = None,
    policy: bool = True,
) -> RenderResult:
    """Render the environment. With ``model`` (or no state yet) that model becomes stable;
    without, the current release state is rendered again (after a config change)."""
    state = read_state(cfg, root)
    if model is not None or state is None:
        pinned = resolve_model_version(model or cfg.registry.model, cfg)
        if state is None:
            state = ReleaseState(stable=pinned)
        elif pinned.storage_uri != state.stable.storage_uri:
            if state.canary is not None:
                raise UserError(
                    f"{cfg.env} runs a canary of {state.canary.model.label()}: finish it with "
                    f"`tuneops release promote --env {cfg.env} --full` or drop it with "
                    f"`tuneops release rollback --env {cfg.env}` before switching models"
                )
            state = ReleaseState(stable=pinned, previous=state.stable)
    return write_env(cfg, state, root=root, policy=policy)


def promote(
    cfg: DeployConfig,
    *,
    model: str | None,
    canary: int | None,
    full: bool,
    root: Path | None = None,
    policy: bool = True,
) -> RenderResult:
    """Move traffic to a new model: ``canary`` percent of it, or all of it with ``full``."""
    if (canary is None) == (not full):
        raise UserError("give exactly one of --canary PERCENT or --full")
    state = read_state(cfg, root)
    if state is None:
        raise UserError(
            f"{cfg.env} has no rendered release yet: "
            f"run `tuneops gitops render --env {cfg.env}` first"
        )
    if canary is not None:
        if not 1 <= canary <= 99:
            raise UserError("--canary takes a percentage from 1 to 99 (use --full for 100)")
        pinned = resolve_model_version(model or cfg.registry.model, cfg)
        if pinned.storage_uri == state.stable.storage_uri:
            raise UserError(f"{pinned.label()} already serves all traffic in {cfg.env}")
        new = ReleaseState(
            stable=state.stable,
            canary=Canary(model=pinned, percent=canary),
            previous=state.previous,
        )
    else:
        if model is not None:
            pinned = resolve_model_version(model, cfg)
            if state.canary and pinned.storage_uri != state.canary.model.storage_uri:
                raise UserError(
                    f"{cfg.env} runs a canary of {state.canary.model.label()}; promote that with "
                    "--full (no --model) or roll it back first"
                )
        elif state.canary:
            pinned = state.canary.model
        else:
            raise UserError(f"{cfg.env} has no canary to promote; give --model to switch fully")
        if pinned.storage_uri == state.stable.storage_uri:
            raise UserError(f"{pinned.label()} already serves all traffic in {cfg.env}")
        new = ReleaseState(stable=pinned, previous=state.stable)
    return write_env(cfg, new, root=root, policy=policy)


def rollback(cfg: DeployConfig, *, root: Path | None = None, policy: bool = True) -> RenderResult:
    """Drop a running canary, or else restore the version that served before the last switch."""
    state = read_state(cfg, root)
    if state is None:
        raise UserError(f"{cfg.env} has no rendered release to roll back")
    if state.canary:
        new = ReleaseState(stable=state.stable, previous=state.previous)
    elif state.previous:
        new = ReleaseState(stable=state.previous, previous=None)
    else:
        raise UserError(f"{cfg.env} has no previous version to roll back to")
    return write_env(cfg, new, root=root, policy=policy)
