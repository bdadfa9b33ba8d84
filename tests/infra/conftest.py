"""Fixtures of the infra tests: one synthesized app (all environments) per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory):
    """Every stack of every environment, built once: (stacks by env and kind, outdir)."""
    from infra.app import build_app
    from infra.config import load_environment, load_settings
    from tuneops.core.environments import environment_names

    outdir = tmp_path_factory.mktemp("cdktf.out")
    envs = [load_environment(name) for name in environment_names()]
    app, stacks = build_app(envs, outdir, load_settings().stack_order)
    app.synth()
    return stacks, outdir


@pytest.fixture(scope="session")
def stack_json(synthesized):
    """Parsed cdk.tf.json of a stack: stack_json("prod", "cluster")."""
    _, outdir = synthesized

    def load(env: str, kind: str) -> dict:
        return json.loads((Path(outdir) / "stacks" / f"{env}-{kind}" / "cdk.tf.json").read_text())

    return load
