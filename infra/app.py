"""The cdktf app: every stack of every environment, synthesized in one process.

Importing the AWS provider bindings costs ~15 s and ~1.7 GB through jsii, so all environments
are built in one ``App`` and synthesized together. The output is plain Terraform JSON under
``<outdir>/stacks/<env>-<stack>/cdk.tf.json``; Terraform runs there (``infra.terraform``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.config import Environment, InfraSettings


@dataclass
class SynthResult:
    outdir: Path
    stacks: dict[str, list[str]]  # env -> stack names in order
    seconds: float


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


def build_app(envs: Sequence[Environment], outdir: Path, order: Sequence[str]):
    """An ``App`` holding every stack of ``envs`` in ``order`` (not yet synthesized)."""
    from cdktf import App

    classes = stack_classes()
    app = App(outdir=str(outdir), skip_validation=False)
    built: dict[str, dict[str, object]] = {}
    for env in envs:
        built[env.name] = {kind: classes[kind](app, env) for kind in order}
    return app, built


def synth(
    envs: Sequence[Environment], settings: InfraSettings, outdir: Path | None = None
) -> SynthResult:
    """Synthesize the stacks of ``envs`` into ``outdir`` (default: the configured one)."""
    outdir = outdir or settings.outdir_path
    started = time.perf_counter()
    app, _ = build_app(envs, outdir, settings.stack_order)
    app.synth()
    stacks = {env.name: [env.stack_name(kind) for kind in settings.stack_order] for env in envs}
    return SynthResult(outdir=outdir, stacks=stacks, seconds=time.perf_counter() - started)
