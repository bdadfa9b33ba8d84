"""Demo step: render the GitOps manifests of dev for the promoted model.

The release is rendered exactly as `tuneops gitops render --env dev` would, validated and
passed through the policy gate, but into ``<cache>/demo/gitops/envs`` so the demo leaves the
reviewed ``gitops/`` folder alone. The model comes from the local registry (the champion, else
the candidate); its storage URI is the object in the local S3 when the MLflow server runs there.
"""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState
from tuneops.core.errors import UserError

console = Console(highlight=False, soft_wrap=True)


def _pick_model(cfg, name: str) -> tuple[str, str] | None:
    from workloads.deploy.gitops import resolve_model_version
    from workloads.models.refs import registry_uri

    for alias in ("champion", "candidate"):
        ref = registry_uri(name, alias=alias)
        try:
            resolve_model_version(ref, cfg)
        except UserError:
            continue
        return ref, alias
    return None


def run(state: DemoState) -> DemoState:
    from tuneops.core.paths import cache_dir
    from workloads.deploy import gitops
    from workloads.deploy.config import load_deploy_config

    overrides = [f"tracking.uri={state.tracking}"]
    if state.artifacts_destination:
        overrides.append(f"registry.artifacts_destination={state.artifacts_destination}")
    cfg = load_deploy_config("dev", overrides=overrides)
    name = state.model_name
    picked = _pick_model(cfg, name)
    if picked is None:
        line = (
            f"gitops: not rendered: no version of {name} is champion or candidate in "
            f"{cfg.tracking.resolved_uri} (the evaluate/register step sets them)"
        )
        console.print(f"[yellow]{line}[/]")
        return state.with_report(line)
    ref, alias = picked
    root = cache_dir() / "demo" / "gitops" / "envs"
    result = gitops.render(cfg, model=ref, root=root)
    for rel in result.files:
        console.print(f"  {result.path / rel}  ({result.validators[rel]})")
    stable = result.state.stable
    console.print(
        f"dev serves {stable.label()} from {stable.storage_uri}; policy gate: {result.policy}"
    )
    return state.with_report(
        f"gitops: dev manifests for {name}@{alias} ({stable.label()}) in {result.path} "
        f"({len(result.files)} files, validated; policy gate: {result.policy})",
        gitops_dir=result.path,
    )
