"""The vendored CRD schemas: that each file is what SOURCES.yaml records, and the strict
validation of every kind, of the rendered gitops tree, of the platform stack's manifests and of
planted bad manifests."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from infra.catalog import load_catalog, values_for
from infra.config import load_environment
from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT
from workloads.deploy import crd_schema, gitops
from workloads.deploy.config import load_deploy_config
from workloads.deploy.validate import validate_manifest

SCHEMAS = REPO_ROOT / "workloads" / "deploy" / "schemas"
EXAMPLES = Path(__file__).parent / "fixtures" / "custom_resources.yaml"
ENVS = ("dev", "staging", "prod")
RECORD_KEYS = {
    "project",
    "repository",
    "tag",
    "commit",
    "app_version",
    "chart",
    "chart_version",
    "path",
    "source_sha256",
    "sha256",
}


def _sources() -> dict[str, dict]:
    return yaml.safe_load((SCHEMAS / "SOURCES.yaml").read_text())["schemas"]


def _upstream() -> list[dict]:
    return yaml.safe_load((SCHEMAS / "upstream.yaml").read_text())["sources"]


def _examples() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLES.read_text()) if doc}


def test_every_vendored_schema_is_recorded_with_its_sha256():
    records = _sources()
    files = {p.relative_to(SCHEMAS).as_posix(): p for p in SCHEMAS.glob("*/*.json")}
    assert sorted(files) == sorted(records)
    for rel, path in files.items():
        assert set(records[rel]) - {"patches"} == RECORD_KEYS, rel
        assert hashlib.sha256(path.read_bytes()).hexdigest() == records[rel]["sha256"], rel
        assert json.loads(path.read_text())["type"] == "object"


def test_every_upstream_kind_is_vendored_at_the_named_release():
    records = _sources()
    for source in _upstream():
        for kind in source["kinds"]:
            mine = [r for rel, r in records.items() if rel.split("/")[1].split(".")[0] == kind]
            assert mine, f"{kind} of {source['project']} is not vendored"
            for record in mine:
                assert record["tag"] == source["tag"]
                assert record["chart_version"] == source["chart_version"]
                assert record["path"] in source["paths"]


def test_every_custom_resource_kind_validates():
    examples = _examples()
    every_kind = {kind for source in _upstream() for kind in source["kinds"]}
    assert every_kind <= set(examples), sorted(every_kind - set(examples))
    for kind, manifest in examples.items():
        assert validate_manifest(manifest, kind, "1.31").startswith("CRD schema ")


_DROP = object()


def _set(manifest: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    node = manifest
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DROP:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value


@pytest.mark.parametrize(
    ("kind", "path", "value", "message"),
    [
        (
            "InferenceService",
            "spec.predictor.model.resources.limitz",
            {"cpu": "1"},
            r"at \$\.spec\.predictor\.model\.resources\.limitz: unknown field",
        ),
        (
            "InferenceService",
            "spec.predictor.tolerations.0.tolerationSecond",
            30,
            r"at \$\.spec\.predictor\.tolerations\[0\]\.tolerationSecond: unknown field",
        ),
        (
            "InferenceService",
            "spec.predictor.minReplicas",
            "two",
            r"at \$\.spec\.predictor\.minReplicas: expected integer, got \"two\"",
        ),
        (
            "InferenceService",
            "spec.predictor.logger.mode",
            "everything",
            r"at \$\.spec\.predictor\.logger\.mode: \"everything\" is not one of: \"all\"",
        ),
        (
            "InferenceService",
            "spec.predictor.model.resources.limits.cpu",
            [6],
            r"limits\.cpu: expected integer or string",
        ),
        (
            "HTTPRoute",
            "spec.rules.0.backendRefs.0.weight",
            1_000_001,
            r"at \$\.spec\.rules\[0\]\.backendRefs\[0\]\.weight: 1000001 breaks maximum 1000000",
        ),
        ("HTTPRoute", "spec.parentRefs.0.name", _DROP, r"parentRefs\[0\]\.name: required"),
        ("SecurityPolicy", "spec.jwt.providers.0.remoteJWKS.url", "x", r"remoteJWKS\.url: unknown"),
        ("Certificate", "spec.privateKey.algorithm", "DSA", r"privateKey\.algorithm: \"DSA\""),
        ("ScaledObject", "spec.minReplicaCount", "0", r"minReplicaCount: expected integer"),
        ("NodePool", "spec.disruption.consolidationPolicy", "Never", r"consolidationPolicy"),
        ("TrainJob", "spec.trainer.numProcPerNode", "auto", r"numProcPerNode: expected integer"),
        ("Application", "spec.sourc", {}, r"at \$\.spec\.sourc: unknown field"),
        (
            "Gateway",
            "metadata.name",
            "Kserve_Gateway",
            r"at \$\.metadata\.name: \"Kserve_Gateway\"",
        ),
        ("Gateway", "metadata.namespace", "a.b", r"at \$\.metadata\.namespace: \"a\.b\""),
        ("Gateway", "metadata.uid", "x", r"at \$\.metadata\.uid: unknown field"),
        ("PrometheusRule", "apiVersion", "monitoring.coreos.com/v2", r"no vendored CRD schema"),
    ],
)
def test_a_planted_bad_field_is_named_in_one_line(kind, path, value, message):
    manifest = copy.deepcopy(_examples()[kind])
    _set(manifest, path, value)
    with pytest.raises(UserError, match=message) as caught:
        validate_manifest(manifest, "planted.yaml", "1.31")
    assert str(caught.value).startswith("planted.yaml: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("api_version", "kind", "named"),
    [
        ("gateway.networking.k8s.io/v1", "GRPCRoute", "gateway.networking.k8s.io/v1 Gateway, "),
        ("example.com/v1", "Widget", "keda.sh/v1alpha1 ScaledObject, TriggerAuthentication"),
    ],
)
def test_a_kind_with_no_vendored_schema_names_those_that_have_one(api_version, kind, named):
    manifest = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(UserError, match=f"no vendored CRD schema for {api_version} {kind}") as e:
        validate_manifest(manifest, "widget.yaml", "1.31")
    assert named in str(e.value)


def test_core_kinds_still_go_through_the_kubernetes_schemas():
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert validate_manifest(config_map, "cm", "1.31") == "kubernetes-validate 1.31"
    with pytest.raises(UserError, match="invalid ConfigMap"):
        validate_manifest({**config_map, "data": {"k": 1}}, "cm", "1.31")


SMALL = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "mode": {"type": "string", "pattern": "^(?i)(abort|warn)?$"},
                "tags": {
                    "type": "array",
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                    },
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
    },
}


def _small(spec: dict) -> None:
    validator = crd_schema.compile_schema(SMALL, "example.com/v1", "Small")
    manifest = {"apiVersion": "example.com/v1", "kind": "Small", "metadata": {"name": "s"}}
    crd_schema.check(validator, {**manifest, "spec": spec}, "small")


def test_the_strict_rules_on_a_small_schema():
    _small(
        {
            "port": 8080,
            "note": None,
            "free": {"anything": {"goes": [1]}},
            "labels": {"a": "b"},
            "mode": "WARN",
            "tags": ["a", "b"],
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 81}],
            "template": {"kind": "Pod", "metadata": {"labels": {"a": "b"}}, "spec": {}},
        }
    )
    _small({"port": "http"})
    refused = [
        ({"port": 1.5}, r"spec\.port: expected integer or string"),
        ({"note": 3}, r"spec\.note: expected string or null"),
        ({"labels": {"a": 1}}, r"spec\.labels\.a: expected string"),
        ({"mode": "panic"}, r"spec\.mode: \"panic\" does not match"),
        ({"tags": ["a", "a"]}, r"spec\.tags: .*non-unique"),
        ({"ports": [{"name": "h"}, {"name": "h"}]}, r"share the key name='h'"),
        ({"extra": 1}, r"\$\.spec\.extra: unknown field"),
        ({"template": {"metadata": {"labels": {"a": 1}}}}, r"template\.metadata\.labels\.a"),
    ]
    for spec, message in refused:
        with pytest.raises(UserError, match=message):
            _small(spec)


def _manifests_in(node, where: str):
    """Every full manifest (apiVersion, kind and metadata) inside a release's values."""
    if isinstance(node, dict):
        if {"apiVersion", "kind", "metadata"} <= set(node):
            yield where, node
            return
        for key, value in node.items():
            yield from _manifests_in(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _manifests_in(value, f"{where}[{index}]")


@pytest.mark.parametrize("name", ["local", "dev", "staging", "prod"])
def test_every_manifest_the_platform_stack_installs_validates(name):
    """The raw-manifest releases of platform/catalog.yaml (and any manifest in a release's
    values, with the environment's overlay from platform/values/) against the schemas."""
    env = load_environment(name)
    found = {}
    for release in load_catalog().ordered():
        values = values_for(release, env.platform.values_overlay)
        found.update(dict(_manifests_in(values, release.name)))
    for where, manifest in found.items():
        validate_manifest(manifest, f"platform {name}: {where}", env.cluster.version)
    kinds = {m["kind"] for m in found.values()}
    assert {"GatewayClass", "Gateway"} <= kinds
    gateway = copy.deepcopy(next(m for m in found.values() if m["kind"] == "Gateway"))
    gateway["spec"]["listeners"][0]["allowedRoute"] = {}
    with pytest.raises(UserError, match=r"spec\.listeners\[0\]\.allowedRoute: unknown field"):
        validate_manifest(gateway, "planted gateway", env.cluster.version)


V1 = "s3://tuneops-dev-artifacts/1/models/m-v1/artifacts"
V2 = "s3://tuneops-dev-artifacts/1/models/m-v2/artifacts"


def test_validation_names_the_bad_field_of_a_rendered_manifest():
    from workloads.deploy.manifests import env_manifests
    from workloads.deploy.release import ModelVersion, ReleaseState

    cfg = load_deploy_config("dev")
    files = env_manifests(cfg, ReleaseState(stable=ModelVersion(ref=V1, storage_uri=V1)))
    isvc = files["serving/inferenceservice.yaml"]
    isvc["spec"]["predictor"]["minReplica"] = 1
    where = r"^isvc: invalid InferenceService at \$\.spec\.predictor\.minReplica: unknown"
    with pytest.raises(UserError, match=where):
        validate_manifest(isvc, "isvc", "1.31")
    cm = files["serving/release-state.yaml"]
    cm["data"]["stable"] = 3  # ConfigMap values must be strings
    with pytest.raises(UserError, match="invalid ConfigMap"):
        validate_manifest(cm, "cm", "1.31")
    route = files["serving/httproute.yaml"]
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -5
    where = r"invalid HTTPRoute at \$\.spec\.rules\[0\]\.backendRefs\[0\]\.weight: -5 breaks"
    with pytest.raises(UserError, match=where):
        validate_manifest(route, "route", "1.31")
    app = files["apps/serving.yaml"]
    app["spec"]["sourc"] = app["spec"].pop("source")
    with pytest.raises(UserError, match=r"invalid Application at \$\.spec\.sourc: unknown field"):
        validate_manifest(app, "app", "1.31")


def _manifests_under(root: Path) -> dict[str, dict]:
    found = {}
    for path in sorted(root.rglob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc:
                found[f"{path.relative_to(root)}#{index}"] = doc
    return found


def test_every_manifest_under_gitops_validates(tmp_path, monkeypatch):
    """What the render writes (stable and canary, every environment), read back from disk, and
    whatever is committed under gitops/envs, passes the same validation."""
    monkeypatch.setattr(gitops, "run_manifest_gate", lambda paths: "skipped")
    for env in ENVS:
        cfg = load_deploy_config(env)
        gitops.render(cfg, model=V1, root=tmp_path)
        gitops.promote(cfg, model=V2, canary=10, full=False, root=tmp_path)
    rendered = _manifests_under(tmp_path)
    assert {rel.split("/")[0] for rel in rendered} == set(ENVS)
    assert {m["kind"] for m in rendered.values()} >= {"InferenceService", "HTTPRoute"}
    assert any("inferenceservice-canary.yaml" in rel for rel in rendered)
    committed = _manifests_under(gitops.gitops_root())
    for rel, manifest in {**rendered, **committed}.items():
        env = rel.split("/")[0]
        version = load_deploy_config(env if env in ENVS else "dev").kubernetes_version
        assert validate_manifest(manifest, rel, version)
