"""The stacks of every environment, synthesized once for the policy tests."""

from __future__ import annotations

import pytest

ENVIRONMENTS = ("local", "dev", "staging", "prod")


@pytest.fixture(scope="session")
def synthesized_out(tmp_path_factory):
    from infra.app import synth
    from infra.config import load_environment, load_settings

    out = tmp_path_factory.mktemp("cdktf.out")
    synth([load_environment(env) for env in ENVIRONMENTS], load_settings(), out)
    return out
