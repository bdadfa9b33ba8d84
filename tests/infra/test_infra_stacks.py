"""cdktf Testing assertions on the synthesized stacks, per stack and environment."""

from __future__ import annotations

import json
import re

import pytest
from cdktf import Testing as CdktfTesting

SYSTEM_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NO_SCHEDULE"}


def synth(synthesized, env: str, kind: str) -> str:
    stacks, _ = synthesized
    return CdktfTesting.synth(stacks[env][kind])


def resources(doc: dict, rtype: str) -> list[dict]:
    return list(doc.get("resource", {}).get(rtype, {}).values())


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_one_managed_node_group_the_tainted_system_pool(synthesized, stack_json, env):
    """GPU and general capacity come from Karpenter: the only managed node group is the system
    pool, on Amazon Linux 2023, tainted for controllers, and nothing carries the tags of a
    cluster autoscaler that is not installed."""
    out = synth(synthesized, env, "cluster")
    assert CdktfTesting.to_have_resource_with_properties(
        out,
        "aws_eks_node_group",
        {
            "node_group_name": "system",
            "ami_type": "AL2023_x86_64_STANDARD",
            "labels": {"tuneops.io/pool": "system"},
            "taint": [SYSTEM_TAINT],
        },
    )
    doc = stack_json(env, "cluster")
    (group,) = resources(doc, "aws_eks_node_group")
    assert "nvidia" not in json.dumps(group).lower()
    assert "aws_autoscaling_group_tag" not in doc["resource"]
    assert "cluster-autoscaler" not in json.dumps(doc)


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_every_data_bucket_encrypted_with_kms_versioned_and_private(synthesized, stack_json, env):
    out = synth(synthesized, env, "data")
    assert CdktfTesting.to_have_resource_with_properties(
        out,
        "aws_s3_bucket_server_side_encryption_configuration",
        {"rule": [{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"}}]},
    )
    doc = stack_json(env, "data")
    buckets = resources(doc, "aws_s3_bucket")
    assert len(buckets) == 4  # datasets, artifacts, models, access logs
    for rtype in (
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_lifecycle_configuration",
    ):
        assert len(resources(doc, rtype)) == len(buckets), rtype
    logging = resources(doc, "aws_s3_bucket_logging")
    assert len(logging) == 3  # every data bucket logs to the access-log bucket
    assert all(
        "access-logs" in item["target_bucket"] or "logs_bucket" in item["target_bucket"]
        for item in logging
    )
    kms = [
        r
        for r in resources(doc, "aws_s3_bucket_server_side_encryption_configuration")
        if r["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"
    ]
    assert len(kms) == 3  # every data bucket; the log bucket must use SSE-S3
    for pab in resources(doc, "aws_s3_bucket_public_access_block"):
        assert all(
            pab[k] is True
            for k in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )
    policies = [p["policy"] for p in resources(doc, "aws_s3_bucket_policy")]
    delivery = [p for p in policies if "logging.s3.amazonaws.com" in p]
    assert len(delivery) == 1  # the log bucket lets S3 deliver access logs
    tls_only = [p for p in policies if '"aws:SecureTransport": "false"' in p]
    # moto serves plain HTTP: see configs/infra/environments/local.yaml
    assert len(tls_only) == (0 if env == "local" else 4)


def test_prod_api_endpoint_private_dev_public_with_restricted_cidrs(synthesized):
    assert CdktfTesting.to_have_resource_with_properties(
        synth(synthesized, "prod", "cluster"),
        "aws_eks_cluster",
        {"vpc_config": {"endpoint_private_access": True, "endpoint_public_access": False}},
    )
    assert CdktfTesting.to_have_resource_with_properties(
        synth(synthesized, "dev", "cluster"),
        "aws_eks_cluster",
        {
            "vpc_config": {
                "endpoint_public_access": True,
                "public_access_cidrs": ["203.0.113.0/24"],
            },
            "encryption_config": {"resources": ["secrets"]},
        },
    )


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_cluster_encrypts_secrets_logs_control_plane_and_runs_managed_addons(stack_json, env):
    doc = stack_json(env, "cluster")
    (cluster,) = resources(doc, "aws_eks_cluster")
    assert cluster["encryption_config"]["provider"]["key_arn"].startswith("${aws_kms_key.")
    assert set(cluster["enabled_cluster_log_types"]) >= {"api", "audit", "authenticator"}
    addons = {a["addon_name"]: a for a in resources(doc, "aws_eks_addon")}
    assert set(addons) == {
        "vpc-cni",
        "coredns",
        "kube-proxy",
        "aws-ebs-csi-driver",
        "eks-pod-identity-agent",
    }
    for addon in addons.values():
        assert re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", addon["addon_version"])
    # the networking add-ons are in place before the system pool's nodes join; the rest after
    (group,) = resources(doc, "aws_eks_node_group")
    assert len(group["depends_on"]) == 3
    assert all(d.startswith("aws_eks_addon.") for d in group["depends_on"])
    for late in ("coredns", "aws-ebs-csi-driver"):
        (after,) = addons[late]["depends_on"]
        assert after.startswith("aws_eks_node_group.")
    assert resources(doc, "aws_iam_openid_connect_provider")
    for lt in resources(doc, "aws_launch_template"):
        assert lt["metadata_options"]["http_tokens"] == "required"
        assert lt["block_device_mappings"][0]["ebs"]["encrypted"] == "true"


def test_clusters_run_a_kubernetes_version_in_standard_support_and_deploy_agrees(stack_json):
    """EKS 1.35 is in standard support until 2027-03-27 (EKS release calendar); the manifests
    the project renders are validated against the same version."""
    import yaml

    from tuneops.core.paths import CONFIG_DIR

    for env in ("local", "dev", "staging", "prod"):
        (cluster,) = resources(stack_json(env, "cluster"), "aws_eks_cluster")
        assert cluster["version"] == "1.35"
        if env != "local":
            deploy = yaml.safe_load((CONFIG_DIR / "deploy" / f"{env}.yaml").read_text())
            assert deploy["kubernetes_version"] == cluster["version"]


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_irsa_trust_is_scoped_to_one_service_account(synthesized, stack_json, env):
    out = synth(synthesized, env, "data")
    assert CdktfTesting.to_have_data_source_with_properties(
        out,
        "aws_iam_policy_document",
        {
            "statement": [
                {
                    "actions": ["sts:AssumeRoleWithWebIdentity"],
                    "condition": [
                        {
                            "test": "StringEquals",
                            "values": ["system:serviceaccount:tuneops:trainer"],
                        },
                        {"test": "StringEquals", "values": ["sts.amazonaws.com"]},
                    ],
                }
            ]
        },
    )
    docs = stack_json(env, "data")["data"]["aws_iam_policy_document"]
    trusts = {k: v for k, v in docs.items() if "_trust_" in k}
    assert len(trusts) == 3
    subjects = set()
    for trust in trusts.values():
        (statement,) = trust["statement"]
        conditions = {c["variable"].rsplit(":", 1)[1]: c for c in statement["condition"]}
        assert set(conditions) == {"sub", "aud"}
        assert conditions["sub"]["test"] == "StringEquals"  # never StringLike with wildcards
        (subject,) = conditions["sub"]["values"]
        assert "*" not in subject
        subjects.add(subject)
    assert subjects == {
        "system:serviceaccount:tuneops:trainer",
        "system:serviceaccount:tuneops:model-server",
        "system:serviceaccount:mlflow:mlflow",
    }


def test_workload_roles_grant_least_privilege(stack_json):
    docs = stack_json("prod", "data")["data"]["aws_iam_policy_document"]
    perms = {k.split("_")[1]: v for k, v in docs.items() if "_permissions_" in k}
    for doc in perms.values():
        for statement in doc["statement"]:
            assert all(not a.endswith("*") for a in statement["actions"])
            assert "*" not in statement["resources"]
    server_actions = {a for st in perms["model-server"]["statement"] for a in st["actions"]}
    assert "s3:PutObject" not in server_actions  # the model server only reads
    trainer = perms["trainer"]["statement"]
    datasets_writes = [
        st
        for st in trainer
        if "s3:PutObject" in st["actions"] and any("datasets" in r for r in st["resources"])
    ]
    assert datasets_writes == []  # the trainer reads datasets, never writes them


@pytest.mark.parametrize("env", ["local", "prod"])
def test_model_server_reads_registered_models_under_the_mlflow_prefix_only(stack_json, env):
    """KServe downloads registered MLflow models from s3://<artifacts>/mlflow/...: the model
    server may list and get that prefix, and nothing else of the artifacts bucket."""
    from infra.config import load_environment

    environment = load_environment(env)
    prefix = environment.storage.mlflow_prefix
    docs = stack_json(env, "data")["data"]["aws_iam_policy_document"]
    (server,) = [v for k, v in docs.items() if "_permissions_" in k and "model-server" in k]
    artifacts = [st for st in server["statement"] if any("artifacts" in r for r in st["resources"])]
    assert artifacts, "the model server cannot read registered models"
    by_action = {a: st for st in artifacts for a in st["actions"]}
    assert set(by_action) == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}
    listing = by_action["s3:ListBucket"]
    assert all(not r.endswith("/*") for r in listing["resources"])
    assert listing["condition"] == [
        {"test": "StringLike", "variable": "s3:prefix", "values": [prefix, f"{prefix}/*"]}
    ]
    assert all(r.endswith(f"/{prefix}/*") for r in by_action["s3:GetObject"]["resources"])
    # the prefix is the one the platform's MLflow server writes artifacts under
    from infra.catalog import load_catalog

    (mlflow,) = [r for r in load_catalog().releases if r.name == "mlflow"]
    assert mlflow.values["artifactRoot"]["s3"]["path"] == prefix


def test_platform_releases_pinned_ordered_and_wired(synthesized, stack_json):
    for env in ("local", "dev", "staging", "prod"):
        doc = stack_json(env, "platform")
        releases = resources(doc, "helm_release")
        names = {r["name"] for r in releases}
        assert {
            "cert-manager",
            "kserve",
            "kubeflow-trainer",
            "mlflow",
            "argo-cd",
            "kube-prometheus-stack",
            "nvidia-device-plugin",
            "envoy-gateway",
            "kserve-gateway",
            "kserve-crd",
            "kserve-runtimes",
            "keda",
            "cluster-issuers",
            "gateway-certificate",
            "karpenter",
            "karpenter-node-pools",
            "metrics-server",
            "aws-load-balancer-controller",
        } <= names
        for release in releases:
            assert re.fullmatch(r"v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", release["version"])
        by_name = {r["name"]: r for r in releases}
        # install order: Karpenter and its pools first (the system pool runs controllers only),
        # KServe after cert-manager, MLflow after both
        assert by_name["karpenter"].get("depends_on") is None
        assert by_name["karpenter-node-pools"]["depends_on"] == ["helm_release.release-karpenter"]
        assert "helm_release.release-karpenter-node-pools" in by_name["cert-manager"]["depends_on"]
        assert "helm_release.release-cert-manager" in by_name["kserve"]["depends_on"]
        assert "helm_release.release-kserve" in by_name["mlflow"]["depends_on"]
        mlflow_sets = {s["name"]: s["value"] for s in by_name["mlflow"]["set"]}
        assert (
            "outputs.mlflow_role_arn"
            in mlflow_sets["serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn"]
        )
    assert CdktfTesting.to_have_resource_with_properties(
        synth(synthesized, "prod", "platform"),
        "helm_release",
        {"name": "kserve", "chart": "kserve-resources", "version": "v0.20.0"},
    )
    prod_values = json.dumps(resources(stack_json("prod", "platform"), "helm_release"))
    assert "retention: 30d" in prod_values  # the prod overlay of platform/values/


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_gateway_api_installed_before_kserve_with_the_gateway_the_canary_route_uses(
    stack_json, env
):
    """Standard-mode canaries are a weighted HTTPRoute on the Gateway named in configs/deploy:
    the platform must install a Gateway API implementation and that Gateway, before KServe."""
    import yaml

    from tuneops.core.paths import CONFIG_DIR

    by_name = {r["name"]: r for r in resources(stack_json(env, "platform"), "helm_release")}
    envoy = by_name["envoy-gateway"]
    assert (envoy["repository"], envoy["chart"], envoy["version"]) == (
        "oci://docker.io/envoyproxy",
        "gateway-helm",
        "v1.9.0",
    )
    assert envoy["namespace"] == "envoy-gateway-system"
    gateway_release = by_name["kserve-gateway"]
    assert "helm_release.release-envoy-gateway" in gateway_release["depends_on"]
    assert "helm_release.release-kserve-gateway" in by_name["kserve"]["depends_on"]

    route = yaml.safe_load((CONFIG_DIR / "deploy" / f"{env}.yaml").read_text())["route"]
    wanted = route["gateway"]
    manifests = yaml.safe_load(gateway_release["values"][0])["resources"]
    kinds = {m["kind"]: m for m in manifests}
    gateway, gateway_class = kinds["Gateway"], kinds["GatewayClass"]
    assert gateway["metadata"] == {"name": wanted["name"], "namespace": wanted["namespace"]}
    assert gateway["spec"]["gatewayClassName"] == gateway_class["metadata"]["name"]
    assert (
        gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    )

    kserve_values = yaml.safe_load(by_name["kserve"]["values"][0])
    ingress = kserve_values["kserve"]["controller"]["gateway"]["ingressGateway"]
    assert ingress["enableGatewayApi"] is True
    assert ingress["kserveGateway"] == f"{wanted['namespace']}/{wanted['name']}"


def test_kubeflow_trainer_serves_the_trainjob_api_the_project_renders(stack_json):
    by_name = {r["name"]: r for r in resources(stack_json("prod", "platform"), "helm_release")}
    # runtimePatches in the rendered TrainJob is the Trainer 2.3 API
    assert by_name["kubeflow-trainer"]["version"] == "2.3.0"


def test_network_nat_per_az_in_prod_single_in_dev_with_flow_logs(stack_json):
    prod, dev = stack_json("prod", "network"), stack_json("dev", "network")
    assert len(resources(prod, "aws_nat_gateway")) == 3
    assert len(resources(dev, "aws_nat_gateway")) == 1
    assert len(resources(prod, "aws_subnet")) == 6
    for doc in (prod, dev):
        (flow,) = resources(doc, "aws_flow_log")
        assert flow["traffic_type"] == "ALL"
        (endpoint,) = resources(doc, "aws_vpc_endpoint")
        assert endpoint["vpc_endpoint_type"] == "Gateway"


def test_database_multi_az_and_protected_in_prod_with_managed_password(stack_json):
    (prod,) = resources(stack_json("prod", "data"), "aws_db_instance")
    (dev,) = resources(stack_json("dev", "data"), "aws_db_instance")
    assert prod["multi_az"] is True and prod["deletion_protection"] is True
    assert dev["multi_az"] is False and dev["skip_final_snapshot"] is True
    for db in (prod, dev):
        assert db["manage_master_user_password"] is True
        assert db["storage_encrypted"] is True and db["publicly_accessible"] is False
        assert "password" not in db


def test_registry_immutable_scanned_kms(stack_json):
    repos = resources(stack_json("staging", "data"), "aws_ecr_repository")
    assert {r["name"] for r in repos} == {"tuneops/train", "tuneops/eval", "tuneops/serve"}
    for repo in repos:
        assert repo["image_tag_mutability"] == "IMMUTABLE"
        assert repo["image_scanning_configuration"]["scan_on_push"] is True
        assert repo["encryption_configuration"][0]["encryption_type"] == "KMS"


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_state_backend_locks_and_every_taggable_resource_tagged(stack_json, env):
    for kind in ("network", "cluster", "data", "platform"):
        doc = stack_json(env, kind)
        backend = doc["terraform"]["backend"]["s3"]
        assert backend["use_lockfile"] is True and backend["encrypt"] is True
        assert backend["key"] == f"tuneops/{env}/{kind}.tfstate"
        for rtype, items in doc.get("resource", {}).items():
            for item in items.values():
                if "tags" in item:
                    assert {"environment", "owner", "cost-center"} <= set(item["tags"]), rtype
                    assert item["tags"]["environment"] == env


def test_local_talks_to_moto_on_loopback_and_real_envs_do_not(stack_json):
    local = stack_json("local", "network")["provider"]["aws"][0]
    assert set(local["endpoints"][0].values()) == {"http://127.0.0.1:5055"}
    assert local["s3_use_path_style"] is True and local["skip_credentials_validation"] is True
    prod = stack_json("prod", "network")["provider"]["aws"][0]
    assert "endpoints" not in prod and prod["allowed_account_ids"] == ["333333333333"]
