"""The real path: Terraform against moto's server started by the test, state in moto's S3.

One moto server and one apply are shared by the tests of this module (in order): apply creates
every stack; after a restart of moto a plan shows no changes; a concurrent plan is refused by
the state lock; a change made behind Terraform's back is caught by drift; destroy removes
everything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from aws_clients import moto_client

from tuneops.core.errors import UserError

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def local_env(tmp_path_factory):
    from infra.local.moto import MotoService

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("TUNEOPS_CACHE_DIR")
    os.environ["TUNEOPS_CACHE_DIR"] = str(cache)
    endpoint = f"http://127.0.0.1:{free_port()}"
    moto = MotoService(endpoint=endpoint)
    moto.start()
    outdir = tmp_path_factory.mktemp("cdktf.out")
    try:
        yield {"endpoint": endpoint, "moto": moto, "outdir": outdir, "cache": cache}
    finally:
        moto.stop()
        if old is None:
            os.environ.pop("TUNEOPS_CACHE_DIR", None)
        else:
            os.environ["TUNEOPS_CACHE_DIR"] = old


def runner(local_env):
    from infra.config import load_environment, load_settings
    from infra.ops import Runner

    return Runner(
        load_environment("local", [f"local_endpoint={local_env['endpoint']}"]),
        load_settings(),
        outdir=local_env["outdir"],
        quiet=True,
    )


def client(local_env, service: str):
    return moto_client(local_env["endpoint"], service)


@pytest.fixture(scope="module")
def applied(local_env):
    run = runner(local_env).apply()  # no saved plan: synth, policy, plan, then apply
    return run


def test_apply_creates_every_stack(local_env, applied):
    by_stack = {s.stack: s for s in applied.stacks}
    for stack in ("network", "cluster", "data"):
        assert by_stack[stack].status == "applied"
        assert by_stack[stack].resources > 10
    assert by_stack["platform"].status == "skipped"
    ec2, eks, s3 = (client(local_env, s) for s in ("ec2", "eks", "s3"))
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:environment", "Values": ["local"]}])["Vpcs"]
    assert len(vpcs) == 1
    assert eks.list_clusters()["clusters"] == ["tuneops-local"]
    # the one managed node group is the system pool; every other node comes from Karpenter
    assert eks.list_nodegroups(clusterName="tuneops-local")["nodegroups"] == ["system"]
    system = eks.describe_nodegroup(clusterName="tuneops-local", nodegroupName="system")
    assert system["nodegroup"]["taints"] == [
        {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    _karpenter_and_addon_roles_exist(local_env)
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {
        "tuneops-local-tfstate",
        "tuneops-local-datasets",
        "tuneops-local-artifacts",
        "tuneops-local-models",
    } <= buckets
    enc = s3.get_bucket_encryption(Bucket="tuneops-local-models")
    rule = enc["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    rds = client(local_env, "rds").describe_db_instances()["DBInstances"]
    assert [d["DBInstanceIdentifier"] for d in rds] == ["tuneops-local-mlflow"]
    repos = client(local_env, "ecr").describe_repositories()["repositories"]
    assert {r["repositoryName"] for r in repos} == {
        "tuneops/train",
        "tuneops/eval",
        "tuneops/serve",
    }


def _karpenter_and_addon_roles_exist(local_env) -> None:
    """Karpenter's queue, its five EventBridge rules, and the controllers' roles (moto has no
    add-on, Pod Identity or access entry API: those are off in local)."""
    sqs, events, iam = (client(local_env, s) for s in ("sqs", "events", "iam"))
    url = sqs.get_queue_url(QueueName="tuneops-local-karpenter")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rules = events.list_rules(NamePrefix="tuneops-local-karpenter-")["Rules"]
    assert len(rules) == 5
    for rule in rules:
        (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        assert target["Arn"] == queue_arn
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert {
        "tuneops-local-karpenter",
        "tuneops-local-karpenter-node",
        "tuneops-local-load-balancer-controller",
        "tuneops-local-aws-ebs-csi-driver",
    } <= roles
    attached = iam.list_attached_role_policies(RoleName="tuneops-local-karpenter")
    assert len(attached["AttachedPolicies"]) == 6


def test_state_survives_moto_restart_and_second_plan_shows_no_changes(local_env, applied):
    moto = local_env["moto"]
    moto.stop()
    assert not moto.running()
    moto.start()  # replays the recorded requests: same resources, same ids
    run = runner(local_env).plan(synth=False)
    planned = [s for s in run.stacks if s.status == "planned"]
    assert [s.stack for s in planned] == ["network", "cluster", "data"]
    assert all(s.changes.empty for s in planned), [str(s.changes) for s in planned]


def test_concurrent_plan_is_refused_by_the_state_lock(local_env, applied, tmp_path):
    tf = runner(local_env).terraform("network")
    tf.init()
    # A real second Terraform holds the lock: destroy without auto-approve waits at its
    # confirmation prompt (answered "no" below), holding the state lock meanwhile.
    env = tf.environ()
    env["TF_INPUT"] = "1"
    log = (tmp_path / "holder.log").open("w")
    holder = subprocess.Popen(
        [tf.binary, "destroy", "-no-color"],
        cwd=tf.workdir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    s3 = client(local_env, "s3")
    lock_key = "tuneops/local/network.tfstate.tflock"
    try:
        deadline = time.monotonic() + 300
        held = False
        while not held and time.monotonic() < deadline and holder.poll() is None:
            listed = s3.list_objects_v2(Bucket="tuneops-local-tfstate", Prefix=lock_key)
            held = listed.get("KeyCount", 0) > 0
            time.sleep(0.2)
        assert held, (tmp_path / "holder.log").read_text()[-2000:]
        with pytest.raises(UserError, match="Error acquiring the state lock"):
            tf.plan(save=False)
    finally:
        if holder.poll() is None:
            holder.stdin.write("no\n")
            holder.stdin.flush()
        holder.wait(timeout=300)
        log.close()
    assert "Destroy cancelled" in (tmp_path / "holder.log").read_text()
    # The lock is released again and nothing was destroyed: planning works, no changes.
    tf.plan(save=False)
    assert client(local_env, "eks").list_clusters()["clusters"] == ["tuneops-local"]


def test_drift_catches_a_tag_changed_behind_terraforms_back(local_env, applied):
    ec2 = client(local_env, "ec2")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:environment", "Values": ["local"]}])["Vpcs"]
    ec2.create_tags(Resources=[vpc["VpcId"]], Tags=[{"Key": "owner", "Value": "someone-else"}])
    with pytest.raises(UserError, match=r"drift in local: network: .*aws_vpc\.network_vpc"):
        runner(local_env).drift(synth=False)


def test_destroy_removes_everything(local_env, applied):
    run = runner(local_env).destroy(synth=False)
    assert [s.stack for s in run.stacks] == ["platform", "data", "cluster", "network"]
    for stack in run.stacks:
        assert stack.resources == 0, stack
    assert client(local_env, "eks").list_clusters()["clusters"] == []
    assert client(local_env, "rds").describe_db_instances()["DBInstances"] == []
    left = {b["Name"] for b in client(local_env, "s3").list_buckets()["Buckets"]}
    assert left == {"tuneops-local-tfstate"}  # the state bucket is not the stacks' to destroy
