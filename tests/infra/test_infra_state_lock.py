"""A state lock left held by a Terraform that died: the one-line message, and
`tuneops infra unlock` showing the owner, asking, releasing, and pushing unsaved state.

Real moto server, real terraform binary, real S3 backend with Terraform's lock file, on the
local environment's state bucket and keys. The stack folders hold a small configuration of
built-in resources (no cdktf synth, no provider): what matters here is the backend, which is
the one the synthesized stacks use. The whole path with the real stacks and moto killed during
an apply is tests/infra/test_infra_lock_fault_e2e.py.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
from aws_clients import moto_client
from typer.testing import CliRunner

from infra.locks import StateLockedError
from tuneops.core.errors import UserError
from tuneops.core.process import free_port

pytestmark = pytest.mark.slow
STACKS = ("network", "cluster", "data")


def stack_config(env, stack: str) -> dict:
    """A root module with the backend of the local environment's ``stack``."""
    return {
        "terraform": {
            "backend": {
                "s3": {
                    "bucket": env.state.bucket,
                    "key": env.state_key(stack),
                    "region": env.region,
                    "encrypt": True,
                    "use_lockfile": True,
                    "endpoints": {"s3": env.local_endpoint, "sts": env.local_endpoint},
                    "use_path_style": True,
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "skip_region_validation": True,
                }
            }
        },
        "resource": {"terraform_data": {"a": {"input": stack}, "b": {"input": "b"}}},
    }


@pytest.fixture
def world(tmp_path, monkeypatch):
    from infra.bootstrap import bootstrap_state_bucket
    from infra.config import load_environment, load_settings
    from infra.local.moto import MotoService
    from infra.ops import Runner

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    endpoint = f"http://127.0.0.1:{free_port()}"
    moto = MotoService(endpoint=endpoint)
    moto.start()
    overrides = [f"local_endpoint={endpoint}"]
    env = load_environment("local", overrides)
    bootstrap_state_bucket(env)
    outdir = tmp_path / "out"
    for stack in STACKS:
        folder = outdir / "stacks" / env.stack_name(stack)
        folder.mkdir(parents=True)
        (folder / "cdk.tf.json").write_text(json.dumps(stack_config(env, stack)))
    runner = Runner(env, load_settings(), outdir=outdir, quiet=True)
    args = ["--env", "local", "--set", overrides[0], "--output", str(outdir)]
    try:
        yield {"env": env, "runner": runner, "endpoint": endpoint, "args": args, "tmp": tmp_path}
    finally:
        moto.stop()


def lock_object(world) -> bool:
    s3 = moto_client(world["endpoint"], "s3")
    key = world["env"].state_key("network") + ".tflock"
    return s3.list_objects_v2(Bucket=world["env"].state.bucket, Prefix=key).get("KeyCount", 0) > 0


def die_holding_the_lock(world) -> None:
    """A real `terraform apply` takes the network state's lock and waits at its prompt; it
    is killed there with SIGKILL, so nothing releases the lock."""
    tf = world["runner"].terraform("network")
    tf.init()
    env = {**tf.environ(), "TF_INPUT": "1"}
    holder = subprocess.Popen(
        [tf.binary, "apply", "-no-color"],
        cwd=tf.workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not lock_object(world) and time.monotonic() < deadline and holder.poll() is None:
        time.sleep(0.2)
    assert lock_object(world)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert lock_object(world)


def unsaved_state(world):
    """A state file written by a real apply of the network folder's resources elsewhere
    (local backend), put where Terraform leaves a state it could not save."""
    scratch = world["tmp"] / "scratch"
    scratch.mkdir()
    config = stack_config(world["env"], "network")
    del config["terraform"]
    (scratch / "main.tf.json").write_text(json.dumps(config))
    for command in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        subprocess.run(["terraform", *command], cwd=scratch, check=True, capture_output=True)
    target = world["runner"].terraform("network").errored_state
    target.write_bytes((scratch / "terraform.tfstate").read_bytes())
    return target


def test_a_lock_left_by_a_dead_terraform_is_one_line_and_unlock_releases_it(world):
    from tuneops.cli import app

    die_holding_the_lock(world)
    tf = world["runner"].terraform("network")
    with pytest.raises(StateLockedError) as caught:
        tf.plan()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Error acquiring the state lock of local-network: held by ")
    assert "(terraform apply, lock ID " in message
    assert message.endswith("release it with `tuneops infra unlock --env local`")
    lock_id = caught.value.lock.id

    # no terminal and no --yes: refused, after showing the owner
    result = CliRunner().invoke(app, ["infra", "unlock", *world["args"]])
    assert isinstance(result.exception, UserError)
    assert f"local-network: locked by {caught.value.lock.who} since " in result.output
    assert "without confirmation and there is no terminal" in str(result.exception)
    assert "`tuneops infra unlock --env local --yes`" in str(result.exception)
    assert lock_object(world)

    result = CliRunner().invoke(app, ["infra", "unlock", *world["args"], "--yes"])
    assert result.exit_code == 0, result.output
    assert f"local-network: lock {lock_id} released" in result.output
    assert not lock_object(world)
    assert tf.plan().add == 2  # the state is free again


def test_unlock_asks_on_a_terminal_and_a_no_releases_nothing(world):
    die_holding_the_lock(world)
    command = [sys.executable, "-m", "tuneops.cli", "infra", "unlock", *world["args"]]
    output, code = run_on_terminal(command, answer="n")
    assert "local-network: locked by " in output
    assert "Only if no Terraform still runs against it [y/N]" in output
    assert "unlock of local not confirmed; nothing was released" in output
    assert code == 2
    assert lock_object(world)


def test_unsaved_state_blocks_planning_until_unlock_pushes_it(world):
    from tuneops.cli import app

    die_holding_the_lock(world)
    errored = unsaved_state(world)
    tf = world["runner"].terraform("network")
    with pytest.raises(StateLockedError) as caught:
        tf.plan()
    message = str(caught.value)
    assert "\n" not in message
    assert f"the state that run could not save is in {errored}" in message
    assert message.endswith(
        "release it and push that state with `tuneops infra unlock --env local`"
    )

    result = CliRunner().invoke(app, ["infra", "unlock", *world["args"], "--yes"])
    assert result.exit_code == 0, result.output
    assert "local-network: unsaved state pushed" in result.output
    assert "1 lock(s) released, 1 state(s) pushed" in result.output
    assert not errored.exists() and not lock_object(world)
    assert sorted(tf.state_resources()) == ["terraform_data.a", "terraform_data.b"]
    assert tf.plan().empty  # what the unsaved state held is not created again


def test_unlock_takes_the_env_as_an_option_like_the_other_infra_commands(world):
    from tuneops.cli import app

    result = CliRunner().invoke(app, ["infra", "unlock", "local"])
    assert isinstance(result.exception, UserError)
    assert "`tuneops infra unlock --env local`" in str(result.exception)
    result = CliRunner().invoke(app, ["infra", "unlock", *world["args"]])
    assert result.exit_code == 0, result.output
    assert "unlock local: no state lock is held and no unsaved state is left" in result.output


def run_on_terminal(command: list[str], answer: str, timeout: float = 120) -> tuple[str, int]:
    """Run ``command`` on a pseudo-terminal; answer its first [y/N] prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"[y/N]" in output:
            os.write(leader, f"{answer}\n".encode())
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(leader)
    code = proc.wait(timeout=30)
    return output.decode(errors="replace").replace("\r\n", "\n"), code
