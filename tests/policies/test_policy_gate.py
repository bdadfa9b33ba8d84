"""The policy gate: staging and prod pass, deliberately broken inputs fail, manifests too."""

from __future__ import annotations

import copy
import json

import pytest

from policies import gate
from policies.gate import (
    PolicyResult,
    check_manifests,
    check_terraform,
    load_policy_settings,
    load_skips,
    run_manifest_gate,
)
from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT

CUSTOM = {
    "CKV_TUNEOPS_1",
    "CKV_TUNEOPS_2",
    "CKV_TUNEOPS_3",
    "CKV_TUNEOPS_4",
    "CKV_TUNEOPS_5",
    "CKV_TUNEOPS_6",
    "CKV2_TUNEOPS_1",
}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_staging_and_prod_pass_with_zero_failures(synthesized_out, env):
    from infra.config import load_environment, load_settings
    from infra.policy import check_stacks

    result = check_stacks(load_environment(env), load_settings(), synthesized_out)
    assert result.failed == 0, result.failures
    assert result.ok
    # the skips are counted, not hidden: every skipped failure is one there would be without them
    assert result.skipped > 0 and result.failed_without_skips == result.skipped
    assert result.dead_skips == []
    # every custom check really ran over the stacks, next to checkov's own
    assert set(result.checks_run) >= CUSTOM
    assert len(result.checks_run) > 50
    assert result.resources > 100


def _mutate(doc: dict) -> dict:
    """Break one thing per custom check."""
    doc = copy.deepcopy(doc)
    for group in doc["resource"]["aws_eks_node_group"].values():
        group["ami_type"] = "AL2023_x86_64_NVIDIA"  # GPU capacity belongs to Karpenter
    for lt in doc["resource"]["aws_launch_template"].values():
        lt["metadata_options"]["http_tokens"] = "optional"
    cluster = next(iter(doc["resource"]["aws_eks_cluster"].values()))
    cluster["tags"] = {"Name": "untagged"}
    doc["resource"]["aws_iam_role_policy"] = {
        "admin": {
            "name": "admin",
            "role": "x",
            "policy": json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        }
    }
    doc["resource"]["aws_s3_bucket"] = {"naked": {"bucket": "naked-bucket"}}
    doc["resource"]["helm_release"] = {
        "floating": {
            "name": "x",
            "chart": "x",
            "repository": "https://example.org",
            "version": "~> 1.2",
        }
    }
    return doc


def test_a_deliberately_broken_config_fails_the_gate(synthesized_out, tmp_path):
    """Proves the synthesized JSON (the input the gate scans) is really scanned."""
    original = synthesized_out / "stacks" / "staging-cluster" / "cdk.tf.json"
    broken = tmp_path / "broken" / "cdk.tf.json"
    broken.parent.mkdir()
    broken.write_text(json.dumps(_mutate(json.loads(original.read_text()))))
    result = check_terraform([broken], name="broken-test", environment="staging")
    assert not result.ok
    assert {
        "CKV_TUNEOPS_1",  # GPU pool without taint
        "CKV_TUNEOPS_2",  # IMDSv1 allowed
        "CKV_TUNEOPS_3",  # chart version range
        "CKV_TUNEOPS_4",  # wildcard IAM
        "CKV_TUNEOPS_6",  # tags missing
        "CKV2_TUNEOPS_1",  # bucket without encryption/versioning/public access block
    } <= set(result.by_check)
    # and the unbroken file passes
    assert check_terraform([original], name="ok-test", environment="staging").ok


@pytest.mark.parametrize(
    "breakage",
    [
        lambda pool: pool["spec"]["template"]["spec"].pop("taints"),
        lambda pool: pool["spec"].pop("limits"),
        lambda pool: pool["spec"]["disruption"].update(consolidationPolicy="Never"),
    ],
    ids=["untainted", "unlimited", "never-consolidated"],
)
def test_a_gpu_node_pool_untainted_unlimited_or_never_emptied_fails(
    synthesized_out, tmp_path, breakage
):
    import yaml

    stack = synthesized_out / "stacks" / "staging-platform" / "cdk.tf.json"
    doc = json.loads(stack.read_text())
    (release,) = [
        r for r in doc["resource"]["helm_release"].values() if r["name"] == "karpenter-node-pools"
    ]
    values = yaml.safe_load(release["values"][0])
    gpu = [
        m for m in values["resources"] if m["kind"] == "NodePool" and "gpu" in m["metadata"]["name"]
    ]
    assert gpu
    breakage(gpu[0])
    release["values"] = [yaml.safe_dump(values)]
    path = tmp_path / "pools" / "cdk.tf.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    result = check_terraform([path], name="pools-test", environment="staging")
    assert set(result.by_check) == {"CKV_TUNEOPS_1"}


def test_every_skip_has_a_reason_and_env_scoped_skips_stay_scoped():
    all_skips = load_skips("terraform_json", "prod")
    assert all(len(s.reason) > 40 for s in all_skips)
    prod_ids = {s.id for s in all_skips}
    local_ids = {s.id for s in load_skips("terraform_json", "local")}
    assert "CKV_AWS_293" in local_ids and "CKV_AWS_293" not in prod_ids
    # a manifest scan has no environment, so no Terraform skip reaches it
    assert load_skips("kubernetes") == []


DIGEST = "sha256:" + "0123456789abcdef" * 4

GOOD = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: cloudops, namespace: tuneops}
spec:
  predictor:
    tolerations:
      - {key: nvidia.com/gpu, operator: Equal, value: "true", effect: NoSchedule}
    securityContext: {runAsNonRoot: true, runAsUser: 1000}
    containers:
      - name: kserve-container
        image: registry.example.com/tuneops/serve:1.4.2
        resources:
          requests: {cpu: "1", memory: 2Gi, nvidia.com/gpu: "1"}
          limits: {cpu: "2", memory: 4Gi, nvidia.com/gpu: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: tuneops}
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example.com/web@{digest}
          securityContext: {runAsNonRoot: true}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: 200m, memory: 256Mi}
"""

BAD = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad, namespace: tuneops}
spec:
  template:
    spec:
      containers:
        - name: trainer
          image: registry.example.com/tuneops/train:latest
          resources:
            limits: {nvidia.com/gpu: "1"}
"""


def test_manifest_gate_passes_good_manifests_and_names_each_problem(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "all.yaml").write_text(GOOD.replace("{digest}", DIGEST))
    result = check_manifests([good])
    assert result.ok, result.failures
    assert {
        "CKV_TUNEOPS_K8S_1",
        "CKV_TUNEOPS_K8S_2",
        "CKV_TUNEOPS_K8S_3",
        "CKV_TUNEOPS_K8S_4",
    } <= set(result.checks_run)

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    result = check_manifests([bad])
    assert not result.ok
    assert {
        "CKV_TUNEOPS_K8S_1",
        "CKV_TUNEOPS_K8S_2",
        "CKV_TUNEOPS_K8S_3",
        "CKV_TUNEOPS_K8S_4",
    } <= set(result.by_check)


def test_settings_come_from_their_own_config_file_and_unknown_keys_are_errors(tmp_path):
    settings = load_policy_settings()
    for folder in (settings.terraform_checks, settings.kubernetes_checks):
        assert (REPO_ROOT / folder / "__init__.py").is_file()  # checkov loads them
    assert (REPO_ROOT / settings.skips).is_file()
    assert settings.kubernetes_builtin_checks is False
    bad = tmp_path / "policies.yaml"
    bad.write_text("skip_list: policies/skips.yaml\n")
    with pytest.raises(UserError, match="skip_list"):
        load_policy_settings(bad)


def test_manifest_gate_raises_one_line_naming_the_failures(monkeypatch, tmp_path):
    failures = [f"CKV_TUNEOPS_K8S_{i} Deployment.tuneops.bad in x.yaml: rule" for i in range(7)]
    results = {
        "bad": PolicyResult("kubernetes", passed=3, failed=7, resources=1, failures=failures),
        "good": PolicyResult("kubernetes", passed=12, resources=3),
    }
    monkeypatch.setattr(gate, "check_manifests", lambda paths: results[paths[0].name])
    with pytest.raises(UserError) as caught:
        run_manifest_gate([tmp_path / "bad"])
    message = str(caught.value)
    assert message.startswith("policy gate refused the manifests: CKV_TUNEOPS_K8S_0 ")
    assert "CKV_TUNEOPS_K8S_4" in message and "CKV_TUNEOPS_K8S_5" not in message
    assert message.endswith("(+2 more)") and "\n" not in message
    assert run_manifest_gate([tmp_path / "good"]) == (
        "12 passed, 0 failed, 0 skipped (0 failed with no skips) over 3 resources (kubernetes)"
    )
