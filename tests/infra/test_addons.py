"""The add-ons a working cluster needs, per environment: the EBS CSI driver's and the load
balancer controller's roles (EKS Pod Identity), the controller's upstream policy, the Helm
releases of Karpenter, metrics-server and the controller wired to the stacks' outputs, and the
gateway's internal load balancer."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import yaml

from infra.catalog import load_catalog, release_values
from infra.config import load_environment
from infra.stacks.addons import LBC_POLICY, LBC_POLICY_SOURCE, load_balancer_controller_policy
from tuneops.core.errors import UserError
from workloads.deploy.validate import validate_manifest

ENVS = ["local", "dev", "staging", "prod"]


def releases(stack_json, env: str) -> dict[str, dict]:
    return {r["name"]: r for r in stack_json(env, "platform")["resource"]["helm_release"].values()}


def role(doc: dict, name: str) -> tuple[str, dict]:
    (found,) = [(rid, r) for rid, r in doc["resource"]["aws_iam_role"].items() if r["name"] == name]
    return found


def attached(doc: dict, role_id: str) -> set[str]:
    return {
        a["policy_arn"]
        for a in doc["resource"]["aws_iam_role_policy_attachment"].values()
        if a["role"] == f"${{aws_iam_role.{role_id}.name}}"
    }


def pod_identity_trust(document: str) -> dict:
    (statement,) = json.loads(document)["Statement"]
    assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    return statement


@pytest.mark.parametrize("env", ENVS)
def test_the_ebs_csi_driver_has_a_role_of_its_own(stack_json, env):
    environment = load_environment(env)
    doc = stack_json(env, "cluster")
    role_id, ebs = role(doc, f"{environment.cluster.name}-aws-ebs-csi-driver")
    pod_identity_trust(ebs["assume_role_policy"])
    assert attached(doc, role_id) == {
        "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    }
    addons = {a["addon_name"]: a for a in doc["resource"].get("aws_eks_addon", {}).values()}
    if env == "local":  # moto has no add-on API: the role is there, the add-on is not
        assert addons == {}
        return
    driver = addons["aws-ebs-csi-driver"]
    assert driver["pod_identity_association"] == [
        {"role_arn": f"${{aws_iam_role.{role_id}.arn}}", "service_account": "ebs-csi-controller-sa"}
    ]
    assert json.loads(driver["configuration_values"]) == {"defaultStorageClass": {"enabled": True}}
    assert "eks-pod-identity-agent" in addons


@pytest.mark.parametrize("env", ENVS)
def test_the_load_balancer_controller_role_carries_the_upstream_policy(stack_json, env):
    environment = load_environment(env)
    doc = stack_json(env, "cluster")
    role_id, lbc = role(doc, f"{environment.cluster.name}-load-balancer-controller")
    pod_identity_trust(lbc["assume_role_policy"])
    (policy_id, policy), *_ = [
        (pid, p)
        for pid, p in doc["resource"]["aws_iam_policy"].items()
        if p["name"] == f"{environment.cluster.name}-load-balancer-controller-policy"
    ]
    assert attached(doc, role_id) == {f"${{aws_iam_policy.{policy_id}.arn}}"}
    assert json.loads(policy["policy"]) == load_balancer_controller_policy(environment.region)
    associations = doc["resource"].get("aws_eks_pod_identity_association", {}).values()
    bound = [a for a in associations if a["service_account"] == "aws-load-balancer-controller"]
    if env == "local":
        assert bound == []
    else:
        assert [(a["namespace"], a["role_arn"]) for a in bound] == [
            ("kube-system", f"${{aws_iam_role.{role_id}.arn}}")
        ]


def test_the_controller_policy_is_upstream_with_each_unconditioned_grant_held_to_its_region():
    assert hashlib.sha256(LBC_POLICY.read_bytes()).hexdigest() == LBC_POLICY_SOURCE["sha256"]
    upstream = json.loads(LBC_POLICY.read_text())["Statement"]
    held = load_balancer_controller_policy("eu-west-1")["Statement"]

    def actions(statements):
        out = []
        for st in statements:
            out += st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        return sorted(out)

    assert actions(held) == actions(upstream)  # nothing granted or dropped
    for statement in held:
        assert statement["Resource"] != "*" or "Condition" in statement
        region = statement.get("Condition", {}).get("StringEquals", {}).get("aws:RequestedRegion")
        services = {a.split(":")[0] for a in actions([statement])}
        if region == "us-east-1":
            assert services <= {"iam", "shield"}
        elif region is not None:
            assert region == "eu-west-1" and not services & {"iam", "shield"}
    # statements that were already scoped are untouched
    scoped = [st for st in upstream if st["Resource"] != "*" or "Condition" in st]
    assert all(st in held for st in scoped)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_every_value_taken_from_a_stack_names_an_output_it_has(stack_json, env):
    outputs = {
        stack: set(stack_json(env, stack)["output"]) for stack in ("network", "cluster", "data")
    }
    wired = 0
    for release in releases(stack_json, env).values():
        for item in release.get("set", []):
            stack, output = re.fullmatch(
                r"\$\{data\.terraform_remote_state\.remote-(\w+)\.outputs\.(\w+)\}", item["value"]
            ).groups()
            assert output in outputs[stack], (release["name"], item)
            wired += 1
    assert wired >= 8
    sets = {
        name: {s["name"]: s["value"] for s in r.get("set", [])}
        for name, r in releases(stack_json, env).items()
    }
    assert sets["karpenter"]["settings.interruptionQueue"].endswith(
        "remote-cluster.outputs.karpenter_interruption_queue}"
    )
    assert sets["aws-load-balancer-controller"]["vpcId"].endswith("remote-network.outputs.vpc_id}")


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_controllers_run_on_the_system_pool_as_the_service_accounts_their_roles_trust(
    stack_json, env
):
    environment = load_environment(env)
    by_name = releases(stack_json, env)
    karpenter = by_name["karpenter"]
    assert (karpenter["repository"], karpenter["chart"], karpenter["version"]) == (
        "oci://public.ecr.aws/karpenter",
        "karpenter",
        "1.14.1",
    )
    assert karpenter["namespace"] == environment.cluster.karpenter.namespace
    values = {name: yaml.safe_load(r["values"][0]) for name, r in by_name.items()}
    sa = environment.cluster.karpenter.service_account
    assert values["karpenter"]["serviceAccount"]["name"] == sa
    assert values["aws-load-balancer-controller"]["serviceAccount"]["name"] == (
        "aws-load-balancer-controller"
    )
    for name in ("karpenter", "metrics-server", "aws-load-balancer-controller"):
        assert values[name]["nodeSelector"]["tuneops.io/pool"] == "system"
    for name in ("metrics-server", "aws-load-balancer-controller"):
        assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in values[name]["tolerations"]
    assert (by_name["metrics-server"]["chart"], by_name["metrics-server"]["version"]) == (
        "metrics-server",
        "3.13.1",
    )
    assert by_name["aws-load-balancer-controller"]["version"] == "3.5.0"
    # the pools are rendered from the environment config, in the release of their own
    pools = values["karpenter-node-pools"]["resources"]
    assert {m["kind"] for m in pools} == {"EC2NodeClass", "NodePool"}


@pytest.mark.parametrize("env", ENVS)
def test_the_gateway_sits_behind_an_internal_load_balancer(env):
    environment = load_environment(env)
    (gateway_release,) = [r for r in load_catalog().releases if r.name == "kserve-gateway"]
    manifests = {m["kind"]: m for m in release_values(gateway_release, environment)["resources"]}
    ref = manifests["GatewayClass"]["spec"]["parametersRef"]
    proxy = manifests["EnvoyProxy"]
    assert (ref["group"], ref["kind"]) == ("gateway.envoyproxy.io", "EnvoyProxy")
    assert (ref["name"], ref["namespace"]) == (
        proxy["metadata"]["name"],
        proxy["metadata"]["namespace"],
    )
    service = proxy["spec"]["provider"]["kubernetes"]["envoyService"]
    assert service["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert service["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == (
        "internal"
    )
    # the HTTPS listener is unchanged
    listeners = manifests["Gateway"]["spec"]["listeners"]
    assert [(x["name"], x["protocol"], x["port"]) for x in listeners] == [("https", "HTTPS", 443)]
    for manifest in manifests.values():
        validate_manifest(manifest, f"{env} {manifest['kind']}", environment.cluster.version)


def test_a_release_refers_only_to_stacks_and_renderers_that_exist(tmp_path):
    base = {
        "name": "x",
        "repository": "https://example.org",
        "chart": "x",
        "version": "1.0.0",
        "namespace": "x",
        "order": 1,
    }
    for extra, message in (
        ({"set_from": {"a": "mlflow_role_arn"}}, "is not <stack>.<output>"),
        ({"set_from": {"a": "platform.x"}}, "is not <stack>.<output>"),
        ({"values_from": "node-pools"}, "values_from 'node-pools' is not one of"),
    ):
        (tmp_path / "catalog.yaml").write_text(yaml.safe_dump({"releases": [{**base, **extra}]}))
        with pytest.raises(UserError, match=message):
            load_catalog(tmp_path)
