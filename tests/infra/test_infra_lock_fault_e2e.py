"""Fault: moto's server is killed with SIGKILL during `tuneops infra apply --env local`.

Nothing is mocked: the real moto server (infra/local/moto.py), the real `tuneops` command in
its own process, the real terraform binary. What really happens, in order (the tests of this
module run in that order on one moto and one cache):

1. The apply prints a line per resource; right after the first resource is created the test
   kills moto. Terraform's AWS calls fail after their retries, it cannot save its state
   (``errored.tfstate`` in the stack's folder) nor release its state lock, and the command
   ends with its errors and the way out.
2. moto records every request and replays the recording when it starts again, so the lock
   object and the resources made before the kill come back. The next apply starts moto again
   and ends in one line: who holds the lock, since when, and `tuneops infra unlock --env local`.
3. `unlock` shows the owner and refuses without a terminal and without --yes; with --yes it
   releases the lock (terraform force-unlock) and pushes the unsaved state (terraform state
   push).
4. The apply converges: a line per resource, every stack applied, a second plan without
   changes, and as many resources of each kind in moto as the state holds (none twice).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest
from aws_clients import moto_client

from tuneops.core.process import free_port

pytestmark = pytest.mark.e2e

APPLY_TIMEOUT_S = 1500
RESOURCE_DONE = re.compile(
    r"^  local-\w+ \[\d+/\d+\] (\S+): (Creation|Modifications|Destruction) complete after "
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One moto server and one cache (the commands' processes inherit it) for the module."""
    from infra.local.moto import MotoService

    endpoint = f"http://127.0.0.1:{free_port()}"
    outdir = tmp_path_factory.mktemp("cdktf.out")
    args = ["--env", "local", "--set", f"local_endpoint={endpoint}", "--output", str(outdir)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        MotoService(endpoint=endpoint).start()
        try:
            yield {"endpoint": endpoint, "outdir": outdir, "args": args}
        finally:
            # whichever process started it last, the pid file in this cache names it
            MotoService(endpoint=endpoint).stop()


def tuneops(world, *command: str, **kwargs) -> subprocess.CompletedProcess:
    """`tuneops infra <command>` in its own process, output piped (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "tuneops.cli", "infra", *command, *world["args"]],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=APPLY_TIMEOUT_S,
        **kwargs,
    )


def runner(world):
    from infra.config import load_environment, load_settings
    from infra.ops import Runner

    env = load_environment("local", [f"local_endpoint={world['endpoint']}"])
    return Runner(env, load_settings(), outdir=world["outdir"], quiet=True)


def lock_objects(world) -> list[str]:
    s3 = moto_client(world["endpoint"], "s3")
    listed = s3.list_objects_v2(Bucket="tuneops-local-tfstate", Prefix="tuneops/local/")
    return [o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(".tflock")]


@pytest.fixture(scope="module")
def killed(world):
    """The apply, with moto killed right after the first resource is created."""
    from infra.local.moto import MotoService

    moto = MotoService(endpoint=world["endpoint"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneops.cli", "infra", "apply", *world["args"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines, killed_after = [], None
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if killed_after is None and RESOURCE_DONE.match(line):
            pid = moto.pid()
            os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # this test started it: reap it as init would
            killed_after = RESOURCE_DONE.match(line)[1]
    code = proc.wait(timeout=APPLY_TIMEOUT_S)
    return {"code": code, "stdout": lines, "stderr": proc.stderr.read(), "first": killed_after}


def test_the_killed_apply_fails_with_its_errors_and_the_way_out(world, killed):
    assert killed["first"] is not None, "\n".join(killed["stdout"][-30:])
    assert killed["code"] == 2, killed["stderr"]
    errored = [line for line in killed["stdout"] if re.search(r": \w+ errored after ", line)]
    assert errored, "\n".join(killed["stdout"][-30:])
    error = killed["stderr"]
    assert "error: terraform apply failed in local-network (exit 1):" in error
    assert "connection refused" in error
    assert "Error: Error releasing the state lock" in error
    assert "Terraform could not save its state (kept in " in error
    assert "run `tuneops infra unlock --env local` to release the lock and push that state" in error
    assert (world["outdir"] / "stacks" / "local-network" / "errored.tfstate").is_file()


def test_the_next_apply_restarts_moto_and_explains_the_held_lock_in_one_line(world, killed):
    proc = tuneops(world, "apply")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"local: started moto at {world['endpoint']}" in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: Error acquiring the state lock of local-network: held by ")
    assert re.search(r" since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ min ago\) ", line)
    assert "(terraform apply, lock ID " in line
    assert line.endswith("with `tuneops infra unlock --env local`")
    # the lock is the object Terraform wrote before moto was killed, replayed by moto
    assert lock_objects(world) == ["tuneops/local/network.tfstate.tflock"]


def test_unlock_shows_the_owner_and_refuses_without_a_terminal_or_yes(world, killed):
    proc = tuneops(world, "unlock")
    assert proc.returncode == 2
    assert re.search(
        r"^local-network: locked by \S+ since .* \(terraform apply, lock ID ", proc.stdout, re.M
    )
    assert "local-network: state Terraform could not save: " in proc.stdout
    assert "--yes`" in proc.stderr
    assert lock_objects(world) == ["tuneops/local/network.tfstate.tflock"]


def test_unlock_yes_releases_the_lock_and_pushes_the_unsaved_state(world, killed):
    proc = tuneops(world, "unlock", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"local-network: lock \S+ released", proc.stdout)
    assert "local-network: unsaved state pushed" in proc.stdout
    assert lock_objects(world) == []
    assert not (world["outdir"] / "stacks" / "local-network" / "errored.tfstate").exists()
    # the resource created before the kill is in the state now
    assert killed["first"] in runner(world).terraform("network").state_resources()


def test_the_apply_converges_with_a_line_per_resource_and_no_duplicates(world, killed):
    proc = tuneops(world, "apply")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    match = re.match(
        r"apply local: 4 stacks, (\d+) to add, (\d+) to change, (\d+) to destroy", summary
    )
    assert match, summary
    done = [line for line in proc.stdout.splitlines() if RESOURCE_DONE.match(line)]
    assert len(done) == sum(int(n) for n in match.groups())
    assert killed["first"] not in {RESOURCE_DONE.match(line)[1] for line in done}
    run = runner(world)
    states = {
        stack: run.terraform(stack).state_resources() for stack in ("network", "cluster", "data")
    }
    assert all(len(resources) > 10 for resources in states.values())
    in_state = Counter(address.split(".")[0] for stack in states.values() for address in stack)
    in_moto = moto_inventory(world["endpoint"])
    assert {kind: in_state[kind] for kind in in_moto} == in_moto
    planned = run.plan(synth=False)
    assert all(s.changes.empty for s in planned.stacks if s.status == "planned"), planned.summary()


def moto_inventory(endpoint: str) -> dict[str, int]:
    """How many resources of each kind moto holds for the local environment."""

    def client(service):
        return moto_client(endpoint, service)

    ec2, iam, kms, s3 = (client(s) for s in ("ec2", "iam", "kms", "s3"))
    local = [{"Name": "tag:environment", "Values": ["local"]}]
    state_key = kms.describe_key(KeyId="alias/tuneops-local-tfstate")["KeyMetadata"]["KeyId"]
    keys = [kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"] for k in kms.list_keys()["Keys"]]
    clusters = client("eks").list_clusters()["clusters"]
    return {
        "aws_vpc": len(ec2.describe_vpcs(Filters=local)["Vpcs"]),
        "aws_subnet": len(ec2.describe_subnets(Filters=local)["Subnets"]),
        "aws_internet_gateway": len(
            ec2.describe_internet_gateways(Filters=local)["InternetGateways"]
        ),
        "aws_route_table": len(ec2.describe_route_tables(Filters=local)["RouteTables"]),
        "aws_nat_gateway": sum(
            n["State"] != "deleted" for n in ec2.describe_nat_gateways(Filters=local)["NatGateways"]
        ),
        "aws_eip": len(ec2.describe_addresses()["Addresses"]),
        "aws_kms_key": sum(k["KeyState"] == "Enabled" and k["KeyId"] != state_key for k in keys),
        "aws_iam_role": len(iam.list_roles()["Roles"]),
        "aws_s3_bucket": len(s3.list_buckets()["Buckets"]) - 1,  # not the state bucket
        "aws_eks_cluster": len(clusters),
        "aws_eks_node_group": sum(
            len(client("eks").list_nodegroups(clusterName=c)["nodegroups"]) for c in clusters
        ),
        "aws_db_instance": len(client("rds").describe_db_instances()["DBInstances"]),
        "aws_ecr_repository": len(client("ecr").describe_repositories()["repositories"]),
        "aws_sqs_queue": len(client("sqs").list_queues().get("QueueUrls", [])),
        "aws_cloudwatch_event_rule": len(client("events").list_rules()["Rules"]),
        "aws_cloudwatch_log_group": len(client("logs").describe_log_groups()["logGroups"]),
    }
