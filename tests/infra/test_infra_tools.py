"""Config, bootstrap of the state bucket, the service framework and missing tools."""

from __future__ import annotations

import socket

import pytest
from aws_clients import moto_client
from typer.testing import CliRunner

from tuneops.core.errors import MissingToolError, UserError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto(tmp_path, monkeypatch):
    from infra.local.moto import MotoService

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    service = MotoService(endpoint=f"http://127.0.0.1:{free_port()}")
    service.start()
    yield service
    service.stop()


def test_environments_are_typed_and_bad_values_are_one_clear_error():
    from infra.config import load_environment
    from tuneops.core.environments import environment_names

    assert environment_names() == ["dev", "local", "prod", "staging"]
    with pytest.raises(UserError, match="unknown environment 'qa'"):
        load_environment("qa")
    with pytest.raises(UserError, match=r"public_access_cidrs must not contain 0\.0\.0\.0/0"):
        load_environment("dev", ["cluster.public_access_cidrs=['0.0.0.0/0']"])
    with pytest.raises(UserError, match="min_size <= desired_size"):
        load_environment("dev", ["cluster.system_pool.min_size=5"])


def test_bootstrap_state_is_idempotent(moto):
    from infra.bootstrap import bootstrap_state_bucket
    from infra.config import load_environment

    env = load_environment("local", [f"local_endpoint={moto.url}"])
    first = bootstrap_state_bucket(env)
    assert first.created and len(first.actions) == 2
    second = bootstrap_state_bucket(env)
    assert not second.created and second.actions == []
    assert second.kms_key_arn == first.kms_key_arn
    s3 = moto_client(moto.url, "s3")
    assert s3.get_bucket_versioning(Bucket=env.state.bucket)["Status"] == "Enabled"
    rule = s3.get_bucket_encryption(Bucket=env.state.bucket)["ServerSideEncryptionConfiguration"][
        "Rules"
    ][0]["ApplyServerSideEncryptionByDefault"]
    assert rule == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": first.kms_key_arn}
    pab = s3.get_public_access_block(Bucket=env.state.bucket)["PublicAccessBlockConfiguration"]
    assert all(pab.values())
    kms = moto_client(moto.url, "kms")
    assert len(kms.list_keys()["Keys"]) == 1  # no second key on the second run


def test_moto_service_persists_state_across_restarts(moto):
    s3 = moto_client(moto.url, "s3")
    ec2 = moto_client(moto.url, "ec2")
    s3.create_bucket(Bucket="survives-restart")
    s3.put_object(Bucket="survives-restart", Key="k", Body=b"kept")
    vpc_id = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    first_pid = moto.pid()
    assert moto.stop()
    assert moto.status().running is False
    status = moto.start()
    assert status.healthy and status.pid != first_pid
    assert s3.get_object(Bucket="survives-restart", Key="k")["Body"].read() == b"kept"
    # the same id, so Terraform state recorded before the restart still matches
    assert vpc_id in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    assert moto.start().pid == status.pid  # idempotent: a healthy service is left alone


def test_service_refuses_a_port_another_program_holds(tmp_path, monkeypatch):
    from infra.local.moto import MotoService

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match="another program already listens"):
            MotoService(endpoint=f"http://127.0.0.1:{port}").start()


def test_local_services_are_wired_from_one_environment_with_its_overrides(tmp_path, monkeypatch):
    from infra.config import load_environment, load_settings
    from infra.local.registry import build_services

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path))
    env = load_environment("local", ["local_endpoint=http://127.0.0.1:5999"])
    services = build_services(env, load_settings())
    assert list(services) == ["moto", "postgres", "mlflow", "model-server"]
    moto, postgres, mlflow, model_server = services.values()
    assert moto.url == mlflow.s3_endpoint == "http://127.0.0.1:5999"
    assert mlflow.postgres is postgres and model_server.mlflow is mlflow
    assert mlflow.bucket == env.bucket_names()["artifacts"]
    # the model server is started by its command line: infra imports nothing of workloads
    assert model_server.command()[1:4] == ["-m", "tuneops.cli", "serve"]
    assert all(s.root.parent == tmp_path / "local" for s in services.values())


def test_missing_terraform_is_one_clear_line(monkeypatch):
    from infra.config import load_settings
    from infra.terraform import terraform_binary

    settings = load_settings(overrides=["terraform.binary=terraform-not-installed"])
    with pytest.raises(MissingToolError, match="terraform not found"):
        terraform_binary(settings)


def test_platform_commands_say_what_is_missing(monkeypatch, tmp_path):
    from tuneops.cli import app

    monkeypatch.setenv("PATH", str(tmp_path))  # no helm here
    result = CliRunner().invoke(app, ["platform", "status", "--env", "dev"])
    assert result.exit_code != 0
    assert isinstance(result.exception, MissingToolError)
    assert "no helm binary on PATH" in str(result.exception)


@pytest.mark.parametrize("command", ["status", "diff", "rollback"])
def test_platform_commands_take_env_as_an_option_and_refuse_the_old_spelling(command):
    from tuneops.cli import app

    extra = ["--release", "kserve"] if command == "rollback" else []
    result = CliRunner().invoke(app, ["platform", command, "dev", *extra])
    assert isinstance(result.exception, UserError)
    assert f"`tuneops platform {command} --env dev`" in str(result.exception)
    result = CliRunner().invoke(app, ["platform", command, *extra])
    assert isinstance(result.exception, UserError)
    assert "--env" in str(result.exception)
    result = CliRunner().invoke(app, ["platform", command, "--env", "qa", *extra])
    assert isinstance(result.exception, UserError)
    assert "unknown environment 'qa'" in str(result.exception)


def test_a_command_loads_settings_and_environment_once_and_the_policy_check_gets_overrides(
    monkeypatch, tmp_path
):
    """`tuneops infra policy --env dev --set ...`: one load of each, and the environment the
    gate sees is the one with the overrides (the gate itself is the policies tests' matter)."""
    import infra.config
    import infra.policy
    from policies.gate import PolicyResult
    from tuneops.cli import app

    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    loads = {"settings": 0, "environment": 0}
    real_settings, real_environment = infra.config.load_settings, infra.config.load_environment

    def load_settings(*args, **kwargs):
        loads["settings"] += 1
        return real_settings(*args, **kwargs)

    def load_environment(*args, **kwargs):
        loads["environment"] += 1
        return real_environment(*args, **kwargs)

    seen = []

    def check_stacks(env, settings, outdir=None):
        seen.append((env, settings, outdir))
        return PolicyResult("terraform_json", passed=1)

    monkeypatch.setattr(infra.config, "load_settings", load_settings)
    monkeypatch.setattr(infra.config, "load_environment", load_environment)
    monkeypatch.setattr(infra.policy, "check_stacks", check_stacks)
    args = ["infra", "policy", "--env", "dev", "--set", "owner=someone-else", "--no-synth"]
    result = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert loads == {"settings": 1, "environment": 1}
    ((env, settings, outdir),) = seen
    assert env.name == "dev" and env.owner == "someone-else"
    assert outdir == tmp_path / "out" and settings.stack_order[0] == "network"


@pytest.mark.e2e
def test_dev_plan_without_credentials_stops_after_synth_and_policy(monkeypatch, tmp_path):
    from tuneops.cli import app

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        app, ["infra", "plan", "--env", "dev", "--output", str(tmp_path / "out")]
    )
    assert isinstance(result.exception, MissingToolError), result.output
    message = str(result.exception)
    assert message.startswith("no AWS credentials for dev: synth and policy passed")
    assert "AWS_PROFILE" in message and "\n" not in message
    assert "policy: " in result.output  # the gate ran before the missing credential stopped it
    assert (tmp_path / "out" / "stacks" / "dev-network" / "cdk.tf.json").is_file()


def test_platform_holds_no_argocd_application_so_each_env_bootstraps_its_own_root_app():
    """What a cluster syncs has one source: gitops/envs/<env>/root-app.yaml, rendered per
    environment. An Application under platform/ would sync every environment into one cluster."""
    import yaml

    from infra.catalog import PLATFORM_DIR

    for path in sorted(PLATFORM_DIR.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Application"), path


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], None, "infra synth"),
        (["ENV="], None, "infra synth"),
        (["ENV=prod"], None, "infra synth --env prod"),
        ([], "dev", "infra synth --env dev"),
    ],
)
def test_make_synth_does_every_environment_unless_env_is_given(args, env, expected):
    """`make synth` ignores the `local` default the other targets use (issue: all environments
    when ENV is empty); `make -n` prints the command without running it."""
    import os
    import shutil
    import subprocess

    from tuneops.core.paths import REPO_ROOT

    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    environ = {k: v for k, v in os.environ.items() if k not in ("ENV", "MAKEFLAGS")}
    if env is not None:
        environ["ENV"] = env
    out = subprocess.run(
        ["make", "-n", "synth", *args],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    synth_lines = [
        line.split("tuneops ", 1)[1].strip()
        for line in out.splitlines()
        if "tuneops infra synth" in line
    ]
    assert synth_lines == [expected]
    plan = subprocess.run(
        ["make", "-n", "plan"], cwd=REPO_ROOT, env=environ, capture_output=True, text=True
    ).stdout
    assert f"infra plan --env {env or 'local'}" in plan  # the other targets keep the default
