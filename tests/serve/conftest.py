"""A real model server on a loopback port, shared by the tests of this folder."""

from __future__ import annotations

import pytest

from workloads.serve.process import ServerProcess

TOKEN = "test-token-not-a-secret"
MODEL_NAME = "cloudops-assistant"


@pytest.fixture(scope="session")
def prompt_log(tmp_path_factory):
    return tmp_path_factory.mktemp("serve-log") / "prompts.jsonl"


@pytest.fixture(scope="session")
def server(tiny_model_dir, prompt_log):
    """The tiny model behind bearer auth, every prompt sampled into ``prompt_log``."""
    proc = ServerProcess(
        str(tiny_model_dir),
        token=TOKEN,
        name=MODEL_NAME,
        overrides=[
            "dtype=float32",
            "limits.max_prompt_tokens=256",
            "limits.max_new_tokens=300",
            "sampling.rate=1.0",
            f"sampling.log={prompt_log}",
        ],
    )
    with proc:
        yield proc
