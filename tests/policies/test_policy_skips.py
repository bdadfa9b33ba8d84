"""The skip list is honest: every skip is scoped to where its check really fails (environment
and resource), none is dead, and what the skips hide is counted in the gate's report."""

from __future__ import annotations

import copy
import json

import pytest

from policies.gate import PolicyResult, check_manifests, check_terraform, load_policy_settings
from policies.skiplist import Skip, dead_skips, judge, read_skips, skips_for
from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.paths import CONFIG_DIR, REPO_ROOT

ENVIRONMENTS = ("local", "dev", "staging", "prod")  # all four, synthesized by conftest.py
# The skips prod had before they were scoped: every unscoped skip applied to it.
PROD_SKIPS_BEFORE = {"CKV_AWS_39", "CKV_AWS_118", "CKV2_AWS_62", "CKV_AWS_144", "CKV_AWS_145"} | {
    "CKV_AWS_18"
}


def _skips() -> list[Skip]:
    return read_skips(REPO_ROOT / load_policy_settings().skips)


@pytest.fixture(scope="module")
def scans(synthesized_out) -> dict[str, PolicyResult]:
    from infra.config import load_environment, load_settings
    from infra.policy import check_stacks

    return {
        env: check_stacks(load_environment(env), load_settings(), synthesized_out)
        for env in ENVIRONMENTS
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_passes_with_no_dead_skip_and_counts_what_is_skipped(scans, env):
    result = scans[env]
    assert result.ok, result.failures
    assert result.dead_skips == [], f"skips in {env} that cover no failure: {result.dead_skips}"
    applying = {s.id for s in skips_for(_skips(), "terraform_json", env)}
    assert set(result.skipped_by_check) == applying
    assert result.failed_without_skips == sum(result.skipped_by_check.values()) > 0
    line = result.summary()
    for count in (f"{result.passed} passed", "0 failed", f"{result.skipped} skipped"):
        assert count in line
    assert f"({result.failed_without_skips} failed with no skips)" in line


def test_prods_skip_list_is_shorter_and_holds_only_what_fails_there(scans):
    prod = {s.id for s in skips_for(_skips(), "terraform_json", "prod")}
    assert prod < PROD_SKIPS_BEFORE
    assert "CKV_AWS_39" not in prod, "prod's EKS endpoint is private: the check runs there"
    assert "CKV_AWS_18" not in {s.id for s in _skips()}, "a check that never fails needs no skip"
    # CKV_AWS_145 is skipped on the access-log bucket only; every data bucket passes it.
    assert scans["prod"].skipped_by_check["CKV_AWS_145"] == 1


def test_skip_environments_are_the_known_environments():
    known = {p.stem for p in (CONFIG_DIR / "infra" / "environments").glob("*.yaml")}
    assert set(ENVIRONMENTS) <= known
    for skip in _skips():
        assert set(skip.environments) <= known, skip.id
        assert skip.resources, f"{skip.id} names the resources it covers"


def _write(doc: dict, path):
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return path


def test_a_data_bucket_without_kms_fails_though_the_log_bucket_stays_skipped(
    synthesized_out, tmp_path
):
    doc = json.loads((synthesized_out / "stacks" / "staging-data" / "cdk.tf.json").read_text())
    doc = copy.deepcopy(doc)
    sse = doc["resource"]["aws_s3_bucket_server_side_encryption_configuration"]
    (models,) = [k for k in sse if k.startswith("storage_models_")]
    sse[models]["rule"] = [{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}]
    path = _write(doc, tmp_path / "data" / "cdk.tf.json")
    result = check_terraform([path], name="kms-test", environment="staging")
    assert result.by_check.get("CKV_AWS_145") == 1
    assert any("storage_models_bucket" in f for f in result.failures if "CKV_AWS_145" in f)
    assert result.skipped_by_check["CKV_AWS_145"] == 1  # the access-log bucket


def test_a_public_eks_endpoint_fails_in_prod_but_is_skipped_in_staging(synthesized_out, tmp_path):
    doc = json.loads((synthesized_out / "stacks" / "prod-cluster" / "cdk.tf.json").read_text())
    for cluster in doc["resource"]["aws_eks_cluster"].values():
        cluster["vpc_config"] |= {"endpoint_public_access": True}
        cluster["vpc_config"]["public_access_cidrs"] = ["203.0.113.0/24"]
    path = _write(doc, tmp_path / "cluster" / "cdk.tf.json")
    prod = check_terraform([path], name="eks-prod", environment="prod")
    assert prod.by_check.get("CKV_AWS_39") == 1 and not prod.ok
    staging = check_terraform([path], name="eks-staging", environment="staging")
    assert "CKV_AWS_39" not in staging.by_check and staging.skipped_by_check["CKV_AWS_39"] == 1


def test_a_skip_covers_its_check_on_its_resources_only_and_an_unused_one_is_dead():
    logs = Skip(
        id="CKV_AWS_145",
        reason="the access-log bucket needs SSE-S3",
        environments=["dev"],
        resources=["aws_s3_bucket.storage_logs_bucket_*"],
    )
    spare = Skip(id="CKV_AWS_18", reason="never fails anywhere", environments=["dev"])
    failures = [
        ("CKV_AWS_145", "aws_s3_bucket.storage_logs_bucket_F30D43C9"),
        ("CKV_AWS_145", "aws_s3_bucket.storage_models_bucket_6F885890"),
        ("CKV_AWS_144", "aws_s3_bucket.storage_logs_bucket_F30D43C9"),
    ]
    verdicts = judge(failures, [logs, spare])
    assert [v.skip for v in verdicts] == [logs, None, None]
    assert dead_skips(verdicts, [logs, spare]) == ["CKV_AWS_18"]
    assert skips_for([logs, spare], "terraform_json", "prod") == []
    with pytest.raises(ValueError, match="environments"):
        Skip(id="CKV_AWS_39", reason="scoped to nowhere at all")


def test_a_dead_skip_is_named_in_the_summary():
    result = PolicyResult("terraform_json", passed=5, failed=1, skipped=2, resources=3)
    result.dead_skips = ["CKV_AWS_18"]
    assert result.summary() == (
        "5 passed, 1 failed, 2 skipped (3 failed with no skips) over 3 resources "
        "(terraform_json); dead skips: CKV_AWS_18"
    )
    assert result.as_dict()["failed_without_skips"] == 3


def test_without_checkovs_environment_the_gate_says_how_to_build_it(tmp_path):
    settings = load_policy_settings(overrides=[f"checkov_python={tmp_path}/nope/bin/python"])
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(MissingToolError, match=r"run `make policy-env`") as caught:
        check_manifests([manifest], settings=settings)
    assert isinstance(caught.value, UserError) and "\n" not in str(caught.value)
