"""Karpenter in every environment: the controller's role (EKS Pod Identity) and its policies, the
node role and its access entry, the interruption queue and the EventBridge rules that feed it
(cdktf assertions per environment), and the NodePools rendered from the environment config,
validated against the vendored CRD schemas of the pinned chart."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from cdktf import Testing as CdktfTesting

from infra.config import load_environment
from infra.node_pools import render_node_pools
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR
from workloads.deploy.validate import validate_manifest

ENVS = ["local", "dev", "staging", "prod"]
CONTROLLER_POLICIES = (
    "NodeLifecycle",
    "IAMIntegration",
    "EKSIntegration",
    "Interruption",
    "ZonalShift",
    "ResourceDiscovery",
)
INTERRUPTION_EVENTS = {
    ("aws.health", "AWS Health Event"),
    ("aws.ec2", "EC2 Spot Instance Interruption Warning"),
    ("aws.ec2", "EC2 Instance Rebalance Recommendation"),
    ("aws.ec2", "EC2 Instance State-change Notification"),
    ("aws.ec2", "EC2 Capacity Reservation Instance Interruption Warning"),
}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}


def named(doc: dict, rtype: str, key: str = "name") -> dict[str, tuple[str, dict]]:
    """Resources of ``rtype`` by ``key``: (Terraform id, arguments)."""
    return {r[key]: (rid, r) for rid, r in doc.get("resource", {}).get(rtype, {}).items()}


def attached(doc: dict, role_id: str) -> set[str]:
    """Policy ARNs (or references) attached to the role with Terraform id ``role_id``."""
    return {
        a["policy_arn"]
        for a in doc["resource"]["aws_iam_role_policy_attachment"].values()
        if a["role"] == f"${{aws_iam_role.{role_id}.name}}"
    }


@pytest.mark.parametrize("env", ENVS)
def test_controller_role_trusts_pod_identity_of_this_cluster_with_the_upstream_policies(
    synthesized, stack_json, env
):
    environment = load_environment(env)
    cluster, region, account = environment.cluster.name, environment.region, environment.account_id
    stacks, _ = synthesized
    assert CdktfTesting.to_have_resource_with_properties(
        CdktfTesting.synth(stacks[env]["cluster"]),
        "aws_iam_role",
        {"name": f"{cluster}-karpenter"},
    )
    doc = stack_json(env, "cluster")
    role_id, role = named(doc, "aws_iam_role")[f"{cluster}-karpenter"]
    (trust,) = json.loads(role["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": account},
        "ArnEquals": {"aws:SourceArn": f"arn:aws:eks:{region}:{account}:cluster/{cluster}"},
    }
    policies = named(doc, "aws_iam_policy")
    mine = {n: policies[f"{cluster}-karpenter-{n}"] for n in CONTROLLER_POLICIES}
    assert attached(doc, role_id) == {f"${{aws_iam_policy.{pid}.arn}}" for pid, _ in mine.values()}
    docs = {n: json.loads(p["policy"])["Statement"] for n, (_, p) in mine.items()}
    (queue,) = docs["Interruption"]
    assert queue["Resource"] == f"arn:aws:sqs:{region}:{account}:{cluster}-karpenter"
    assert set(queue["Action"]) == {"sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"}
    (pass_role,) = [s for s in docs["IAMIntegration"] if s["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == f"arn:aws:iam::{account}:role/{cluster}-karpenter-node"
    # launching, tagging and terminating is held to this cluster's NodePools
    for statement in docs["NodeLifecycle"][1:]:
        condition = json.dumps(statement["Condition"])
        assert f"kubernetes.io/cluster/{cluster}" in condition
        assert "karpenter.sh/nodepool" in condition
    for statements in docs.values():
        for statement in statements:
            assert statement["Effect"] == "Allow"
            assert (
                statement["Resource"] != "*"
                or "Condition" in statement
                or statement["Action"] in ("pricing:GetProducts", "iam:ListInstanceProfiles")
            )


@pytest.mark.parametrize("env", ENVS)
def test_controller_and_nodes_are_bound_to_the_cluster_except_where_moto_lacks_the_api(
    stack_json, env
):
    environment = load_environment(env)
    cluster = environment.cluster.name
    doc = stack_json(env, "cluster")
    roles = named(doc, "aws_iam_role")
    node_id, node = roles[f"{cluster}-karpenter-node"]
    (trust,) = json.loads(node["assume_role_policy"])["Statement"]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert attached(doc, node_id) == {
        f"arn:aws:iam::aws:policy/{p}"
        for p in (
            "AmazonEKS_CNI_Policy",
            "AmazonEKSWorkerNodePolicy",
            "AmazonEC2ContainerRegistryPullOnly",
            "AmazonSSMManagedInstanceCore",
        )
    }
    associations = named(doc, "aws_eks_pod_identity_association", "service_account")
    entries = list(doc["resource"].get("aws_eks_access_entry", {}).values())
    (eks,) = doc["resource"]["aws_eks_cluster"].values()
    if env == "local":  # moto has no Pod Identity or access entry API
        assert associations == {} and entries == [] and "access_config" not in eks
        return
    _, association = associations[environment.cluster.karpenter.service_account]
    controller_id, _ = roles[f"{cluster}-karpenter"]
    assert association["namespace"] == environment.cluster.karpenter.namespace
    assert association["role_arn"] == f"${{aws_iam_role.{controller_id}.arn}}"
    (entry,) = entries
    assert entry["type"] == "EC2_LINUX"
    assert entry["principal_arn"] == f"${{aws_iam_role.{node_id}.arn}}"
    assert eks["access_config"]["authentication_mode"] == "API"


@pytest.mark.parametrize("env", ENVS)
def test_interruption_queue_is_fed_by_every_interruption_rule(synthesized, stack_json, env):
    environment = load_environment(env)
    name = f"{environment.cluster.name}-karpenter"
    stacks, _ = synthesized
    assert CdktfTesting.to_have_resource_with_properties(
        CdktfTesting.synth(stacks[env]["cluster"]),
        "aws_sqs_queue",
        {"name": name, "message_retention_seconds": 300, "sqs_managed_sse_enabled": True},
    )
    doc = stack_json(env, "cluster")
    queue_id, _ = named(doc, "aws_sqs_queue")[name]
    (policy,) = doc["resource"]["aws_sqs_queue_policy"].values()
    assert policy["queue_url"] == f"${{aws_sqs_queue.{queue_id}.url}}"
    allow, deny = json.loads(policy["policy"])["Statement"]
    assert "events.amazonaws.com" in allow["Principal"]["Service"]
    assert allow["Action"] == "sqs:SendMessage"
    assert deny["Effect"] == "Deny" and deny["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    rules = doc["resource"]["aws_cloudwatch_event_rule"]
    patterns = set()
    for rule in rules.values():
        pattern = json.loads(rule["event_pattern"])
        (source,), (detail,) = pattern["source"], pattern["detail-type"]
        patterns.add((source, detail))
    assert patterns == INTERRUPTION_EVENTS
    targets = doc["resource"]["aws_cloudwatch_event_target"].values()
    assert {t["rule"] for t in targets} == {
        f"${{aws_cloudwatch_event_rule.{r}.name}}" for r in rules
    }
    assert {t["arn"] for t in targets} == {f"${{aws_sqs_queue.{queue_id}.arn}}"}
    # Karpenter's chart reads the queue's name from the cluster stack's output
    assert doc["output"]["karpenter_interruption_queue"]["value"] == (
        f"${{aws_sqs_queue.{queue_id}.name}}"
    )


def _pools(env_name: str, overrides: list[str] | None = None) -> dict[tuple[str, str], dict]:
    env = load_environment(env_name, overrides)
    return {(m["kind"], m["metadata"]["name"]): m for m in render_node_pools(env)}


@pytest.mark.parametrize("env", ENVS)
def test_node_pools_from_the_environment_config_validate_against_the_crd_schemas(env):
    environment = load_environment(env)
    pools = _pools(env)
    names = ["cpu", *(p.name for p in environment.cluster.karpenter.gpu_pools)]
    assert sorted(pools) == sorted(
        (kind, name) for name in names for kind in ("EC2NodeClass", "NodePool")
    )
    for (kind, name), manifest in pools.items():
        where = validate_manifest(manifest, f"{env} {kind} {name}", environment.cluster.version)
        assert where.startswith("CRD schema karpenter.")
        if kind == "NodePool":
            assert manifest["spec"]["template"]["spec"]["nodeClassRef"]["name"] == name


@pytest.mark.parametrize(
    ("kind", "path", "message"),
    [
        ("NodePool", ("spec", "disruption", "consolidateAftr"), r"disruption\.consolidateAftr"),
        ("NodePool", ("spec", "template", "spec", "taint"), r"template\.spec\.taint: unknown"),
        ("EC2NodeClass", ("spec", "amiSelectorTerm"), r"spec\.amiSelectorTerm: unknown field"),
    ],
)
def test_a_planted_unknown_field_in_a_rendered_pool_is_refused(kind, path, message):
    manifest = copy.deepcopy(_pools("dev")[(kind, "gpu-a10g")])
    node = manifest
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = "planted"
    with pytest.raises(UserError, match=message):
        validate_manifest(manifest, "planted", "1.35")


@pytest.mark.parametrize("env", ENVS)
def test_gpu_pools_are_tainted_labelled_limited_and_scale_to_zero(env):
    environment = load_environment(env)
    for pool in environment.cluster.karpenter.gpu_pools:
        spec = _pools(env)[("NodePool", pool.name)]["spec"]
        template = spec["template"]
        assert template["spec"]["taints"] == [GPU_TAINT]
        assert template["metadata"]["labels"]["tuneops.io/accelerator"] == "nvidia"
        assert spec["limits"] == {"nvidia.com/gpu": str(pool.limit)}
        assert 1 <= pool.limit <= pool.max_gpus
        # no floor: consolidation removes idle nodes, an idle pool has none
        assert "replicas" not in spec
        assert spec["disruption"] == {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": pool.consolidate_after,
        }
    cpu = _pools(env)[("NodePool", "cpu")]["spec"]
    assert cpu["limits"] == {"cpu": str(environment.cluster.karpenter.cpu_pool.limit)}
    assert "taints" not in cpu["template"]["spec"]


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_gpu_placement_of_configs_deploy_lands_on_a_gpu_pool(env):
    """The GPU workloads configs/deploy renders tolerate the pools' taint and select labels some
    GPU pool's nodes carry (instance types included)."""
    deploy = yaml.safe_load((CONFIG_DIR / "deploy" / f"{env}.yaml").read_text())
    gpu_pools = [
        m
        for (kind, name), m in _pools(env).items()
        if kind == "NodePool" and name.startswith("gpu-")
    ]
    toleration = deploy["gpu"]["toleration"]
    assert {k: toleration[k] for k in ("key", "value", "effect")} == GPU_TAINT
    selectors = [
        deploy["gpu"]["node_selector"],
        (deploy.get("training") or {}).get("node_selector"),
    ]
    for selector in filter(None, selectors):
        assert any(_lands(selector, pool) for pool in gpu_pools), selector


def _lands(selector: dict[str, str], pool: dict) -> bool:
    template = pool["spec"]["template"]
    offered = {r["key"]: r["values"] for r in template["spec"]["requirements"]}
    labels = template["metadata"]["labels"]
    return all(labels.get(k) == v or v in offered.get(k, []) for k, v in selector.items())


def test_spot_first_in_dev_on_demand_or_reserved_in_prod():
    def capacity(pools, name):
        (req,) = [
            r
            for r in pools[("NodePool", name)]["spec"]["template"]["spec"]["requirements"]
            if r["key"] == "karpenter.sh/capacity-type"
        ]
        return req["values"]

    dev, prod = _pools("dev"), _pools("prod")
    assert capacity(dev, "gpu-a10g") == ["spot", "on-demand"]
    assert capacity(dev, "cpu") == ["spot", "on-demand"]
    for name in ("cpu", "gpu-a10g", "gpu-a100"):
        assert capacity(prod, name) == ["on-demand"]
    reserved = _pools(
        "prod", ["cluster.karpenter.gpu_pools.1.capacity_reservation_ids=[cr-0123456789abcdef0]"]
    )
    assert capacity(reserved, "gpu-a100") == ["reserved", "on-demand"]
    node_class = reserved[("EC2NodeClass", "gpu-a100")]
    assert node_class["spec"]["capacityReservationSelectorTerms"] == [
        {"id": "cr-0123456789abcdef0"}
    ]
    validate_manifest(node_class, "reserved", "1.35")


def test_the_cost_ceiling_lowers_the_gpu_limit_and_one_that_buys_nothing_is_refused():
    pools = "cluster.karpenter.gpu_pools.0"
    cheap = load_environment("dev", [f"{pools}.max_hourly_usd=1.5"])
    assert cheap.cluster.karpenter.gpu_pools[0].limit == 1  # 1.5 / 1.4 per GPU-hour
    rich = load_environment("dev", [f"{pools}.max_hourly_usd=100"])
    assert rich.cluster.karpenter.gpu_pools[0].limit == 2  # max_gpus
    with pytest.raises(UserError, match="buys no GPU"):
        load_environment("dev", [f"{pools}.max_hourly_usd=0.5"])
    with pytest.raises(UserError, match="capacity reservation id"):
        load_environment("prod", [f"{pools}.capacity_reservation_ids=[r-1]"])
