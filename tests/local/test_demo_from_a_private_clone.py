"""``tuneops demo`` end to end from a clone in a folder only its owner may enter.

A new user may clone into a ``mktemp -d`` folder or root's home (mode 0700), where the accounts
that services drop to (PostgreSQL's) cannot go. The whole loop runs from such a clone with the
clone's own code and cache: dataset, the local infrastructure applied against moto, PostgreSQL
and the MLflow server, a fine-tune, evaluation and the gate, serving, the GitOps render. The
fine-tune and the benchmark are shortened (``--set``) so the test fits the suite's time; the
full-length figures are in the README. The demo's services listen on the fixed ports of
``configs/deploy/platform/local.yaml`` and ``configs/infra``, so those must be free.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from clones import clone_here

from tuneops.core.paths import REPO_ROOT

DEMO_PORTS = (5055, 5433, 5000)  # moto, PostgreSQL, the MLflow server
SHORT = [
    "train.optim.max_steps=6",
    "train.eval.recall_limit=4",
    "eval.benchmark_limit=6",
    "eval.generation.max_new_tokens=24",
]


def _in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tuneops(clone: Path, env: dict, *args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuneops.cli", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.e2e
def test_the_demo_runs_from_a_clone_in_a_private_folder():
    busy = [port for port in DEMO_PORTS if _in_use(port)]
    assert not busy, f"ports {busy} are taken: stop the local platform (tuneops local down)"
    private = Path(tempfile.mkdtemp(prefix="tuneops-private-"))  # 0700, as `mktemp -d` makes
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "tuneops"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEOPS_", "MLFLOW_", "AWS_"))}
    env["PYTHONPATH"] = str(clone)  # the clone's code, not this checkout's
    pg_data = clone / ".cache" / "local" / "postgres" / "data"
    cluster = None
    try:
        clone_here(clone)
        # The clone uses this checkout's installed environments: the interpreter running the
        # tests, and checkov's own (``make setup`` builds both; a fresh clone would too).
        (clone / ".venv-policy").symlink_to(REPO_ROOT / ".venv-policy")
        sets = [arg for item in SHORT for arg in ("--set", item)]
        done = _tuneops(clone, env, "demo", *sets, timeout=1500)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        if pg_data.is_symlink():
            cluster = Path(os.readlink(pg_data))
        report = out[out.rindex("Report") :]
        for line in ("dataset ", "infra: local environment", "mlflow: tracking server", "serve "):
            assert line in report, report
        assert "Evaluation on the benchmark (6 questions)" in report
        assert "demo finished in" in report and "Fine-tune" in report
        # Started in the background: the platform when the apply ended, the base model's
        # development answers when the fine-tune ended (the last step reports them).
        assert "local platform start: done in the background" in out
        assert "validation key-fact recall" in report and "-> fine-tuned" in report
        assert (pg_data / "PG_VERSION").is_file()
        if os.geteuid() == 0:  # PostgreSQL ran as another account, outside the private folder
            assert cluster is not None and not cluster.is_relative_to(private)
        manifests = list((clone / ".cache" / "demo" / "gitops" / "envs" / "dev").glob("*.yaml"))
        assert manifests, "no GitOps manifests rendered"
    finally:
        if clone.is_dir():
            _tuneops(clone, env, "local", "down", timeout=120)
        shutil.rmtree(private, ignore_errors=True)
        if cluster is not None and not cluster.is_relative_to(private):
            shutil.rmtree(cluster.parent, ignore_errors=True)
