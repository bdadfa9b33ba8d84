"""The local platform from a clone that sits in a folder only its owner may enter.

A new user clones anywhere: into a ``mktemp -d`` folder or root's home, both mode 0700. When the
tests run as root, PostgreSQL (which refuses root) runs as the ``postgres`` account, which cannot
enter such a folder; its cluster must then live where that account can reach it, linked from the
cache. The clone gets this checkout's tracked and new files over its last commit, so what is
tested is the code as it is now; moto, PostgreSQL and the MLflow server start from the clone, on
free loopback ports, and one run lands in PostgreSQL with its artifact in moto's S3.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from clones import clone_here

# Run inside the clone, with the clone's own code: start, log one run, read it back, stop.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import boto3
    from mlflow.tracking import MlflowClient
    from infra.local.mlflow_server import MOTO_CREDENTIALS, MlflowServerService
    from infra.local.moto import MotoService
    from infra.local.postgres import PostgresService, load_platform_settings

    pg_port, mlflow_port, moto_port = sys.argv[1:4]
    settings = load_platform_settings(
        [f"postgres.port={pg_port}", f"mlflow.port={mlflow_port}", "mlflow.artifacts_bucket=art"]
    )
    moto = MotoService(endpoint=f"http://127.0.0.1:{moto_port}")
    postgres = PostgresService(settings=settings)
    server = MlflowServerService(
        settings=settings, s3_endpoint=moto.url, region="us-east-1", postgres=postgres
    )
    started = []
    try:
        for service in (moto, postgres):
            service.start()
            started.append(service)
            if service is moto:
                boto3.client(
                    "s3", endpoint_url=moto.url, region_name="us-east-1", **{
                        k.lower(): v for k, v in MOTO_CREDENTIALS.items()
                        if k.startswith("AWS_")
                    }
                ).create_bucket(Bucket="art")
        server.start()
        started.append(server)
        client = MlflowClient(server.url)
        run = client.create_run(client.create_experiment("private-clone"))
        client.log_metric(run.info.run_id, "eval_loss", 1.5)
        client.log_text(run.info.run_id, "ok", "notes/ok.txt")
        back = client.get_run(run.info.run_id)
        print("RESULT " + json.dumps({
            "metric": back.data.metrics["eval_loss"],
            "artifacts": [a.path for a in client.list_artifacts(run.info.run_id, "notes")],
            "data_dir": str(postgres.data_dir),
            "postgres": postgres.status().line(),
        }))
    finally:
        for service in reversed(started):
            service.stop()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.e2e
def test_postgres_and_mlflow_start_from_a_clone_in_a_private_folder():
    private = Path(tempfile.mkdtemp(prefix="tuneops-private-"))  # 0700, as `mktemp -d` makes
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "tuneops"
    data_dir = None
    try:
        clone_here(clone)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNEOPS_", "MLFLOW_"))}
        env["PYTHONPATH"] = str(clone)  # the clone's code, not this checkout's
        ports = [str(_free_port()) for _ in range(3)]
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, *ports],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        assert done.returncode == 0 and lines, done.stderr[-3000:]
        result = json.loads(lines[-1].removeprefix("RESULT "))
        data_dir = Path(result["data_dir"])
        assert result["metric"] == 1.5 and result["artifacts"] == ["notes/ok.txt"]
        assert "healthy" in result["postgres"]
        link = clone / ".cache" / "local" / "postgres" / "data"
        assert (link / "PG_VERSION").is_file()  # found through the cache, wherever it lives
        if os.geteuid() == 0:  # the server ran as another account, outside the private folder
            assert link.is_symlink() and not data_dir.is_relative_to(private)
            assert data_dir.stat().st_uid != 0
        else:  # the server ran as this user, in place
            assert data_dir == link
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if data_dir is not None and not data_dir.is_relative_to(private):
            shutil.rmtree(data_dir.parent, ignore_errors=True)


def _account(uid: int, gid: int):
    import pwd

    return pwd.struct_passwd(("someone", "x", uid, gid, "", "/nonexistent", "/bin/false"))


@pytest.fixture
def traversable_base():
    """A fresh folder under /tmp that anyone may enter (pytest's own folders are 0700)."""
    base = Path(tempfile.mkdtemp(prefix="tuneops-placement-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_folder_only_its_owner_may_enter_blocks_other_accounts(traversable_base):
    from infra.local.postgres import blocked_folder

    private = traversable_base / "private"
    (private / "clone" / ".cache").mkdir(parents=True)
    private.chmod(0o700)
    other = _account(os.getuid() + 4242, os.getgid() + 4242)
    assert blocked_folder(private / "clone" / ".cache", other) == private
    assert blocked_folder(private / "clone" / "not-made-yet", other) == private
    private.chmod(0o711)  # search permission for others is all it takes
    assert blocked_folder(private / "clone" / ".cache", other) is None
    private.chmod(0o710)  # ... or for the account's primary group
    in_group = _account(os.getuid() + 4242, private.stat().st_gid)
    assert blocked_folder(private / "clone", in_group) is None
    assert blocked_folder(private / "clone", other) == private


def test_the_cluster_moves_out_only_when_its_account_cannot_reach_the_cache(
    monkeypatch, traversable_base
):
    from infra.local import postgres

    base = traversable_base
    private, shared = base / "private", base / "shared"
    private.mkdir(mode=0o700)
    shared.mkdir(mode=0o755)
    monkeypatch.setattr(postgres, "SHARED_PARENTS", (shared,))
    account = _account(os.getuid() + 4242, os.getgid() + 4242)
    monkeypatch.setattr(postgres, "_run_as", lambda: account)
    moved = postgres.PostgresService(private / "local")
    assert moved.data_dir.parent.parent == shared and moved.data_dir.name == "data"
    assert moved.socket_dir == moved.data_dir.parent
    # Two caches never share a cluster.
    other = postgres.PostgresService(private / "other")
    assert other.data_dir != moved.data_dir
    private.chmod(0o755)
    in_place = postgres.PostgresService(private / "local")
    assert in_place.data_dir == private / "local" / "postgres" / "data"
    assert in_place.socket_dir == private / "local" / "postgres"
