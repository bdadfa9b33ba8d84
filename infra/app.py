"""The cdktf app: every stack of every environment, synthesized in one process.

Importing the AWS provider bindings costs ~15 s and ~1.7 GB through jsii, so all environments
are built in one ``App`` and synthesized together. The output is plain Terraform JSON under
``<outdir>/stacks/<env>-<stack>/cdk.tf.json``; Terraform runs there (``infra.terraform``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from infra.config import Environment, environment_names, load_environment, load_settings


@dataclass
class SynthResult:
    outdir: Path
    stacks: dict[str, list[str]]  # env -> stack names in order
    seconds: float

    def stack_dir(self, stack_name: str) -> Path:
        return self.outdir / "stacks" / stack_name


def stack_classes():
    from infra.stacks.cluster import ClusterStack
    from infra.stacks.data import DataStack
    from infra.stacks.network import NetworkStack
    from infra.stacks.platform_releases import PlatformStack

    return {
        "network": NetworkStack,
        "cluster": ClusterStack,
        "data": DataStack,
        "platform": PlatformStack,
    }


def build_app(envs: list[Environment], outdir: Path, order: list[str] | None = None):
    """An ``App`` holding every stack of ``envs`` (not yet synthesized)."""
    from cdktf import App

    order = order or load_settings().stack_order
    classes = stack_classes()
    app = App(outdir=str(outdir), skip_validation=False)
    built: dict[str, dict[str, object]] = {}
    for env in envs:
        built[env.name] = {kind: classes[kind](app, env) for kind in order}
    return app, built


def synth(
    env_names: list[str] | None = None,
    outdir: Path | None = None,
    overrides: dict[str, list[str] | None] | None = None,
) -> SynthResult:
    """Synthesize ``env_names`` (all environments when empty) into ``outdir``."""
    settings = load_settings()
    outdir = outdir or settings.outdir_path
    overrides = overrides or {}
    names = env_names or environment_names()
    envs = [load_environment(name, overrides.get(name)) for name in names]
    started = time.perf_counter()
    app, _ = build_app(envs, outdir, settings.stack_order)
    app.synth()
    stacks = {env.name: [env.stack_name(kind) for kind in settings.stack_order] for env in envs}
    return SynthResult(outdir=outdir, stacks=stacks, seconds=time.perf_counter() - started)
