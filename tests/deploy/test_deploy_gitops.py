"""GitOps rendering, promotion and rollback of the serving manifests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from policies import gate as policy_gate
from tuneops.core.errors import UserError
from workloads.deploy import gitops
from workloads.deploy.config import load_deploy_config
from workloads.deploy.validate import validate_manifest

V1 = "s3://tuneops-dev-artifacts/1/models/m-v1/artifacts"
V2 = "s3://tuneops-dev-artifacts/1/models/m-v2/artifacts"


@pytest.fixture(autouse=True)
def _no_policy_gate(monkeypatch):
    """These tests are about rendering; the policy gate has its own test below."""
    monkeypatch.setattr(gitops, "run_manifest_gate", lambda paths: "skipped")


def _load(root: Path, env: str, rel: str) -> dict:
    return yaml.safe_load((root / env / rel).read_text())


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _container(isvc: dict) -> dict:
    (container,) = isvc["spec"]["predictor"]["containers"]
    return container


def _storage(isvc: dict) -> str:
    """The model's location on either runtime: the Hugging Face runtime's storageUri, or the
    project server's STORAGE_URI."""
    predictor = isvc["spec"]["predictor"]
    if "model" in predictor:
        return predictor["model"]["storageUri"]
    env = {e["name"]: e.get("value") for e in _container(isvc)["env"]}
    return env["STORAGE_URI"]


COMMON = [
    "apps/monitoring.yaml",
    "apps/serving.yaml",
    "monitoring/serving-dashboard.yaml",
    "monitoring/serving-rules.yaml",
    "monitoring/training-dashboard.yaml",
    "monitoring/training-rules.yaml",
    "root-app.yaml",
    "serving/httproute.yaml",
    "serving/inferenceservice.yaml",
    "serving/networkpolicy.yaml",
    "serving/podmonitor.yaml",
    "serving/ratelimit.yaml",
    "serving/release-state.yaml",
    "serving/securitypolicy.yaml",
]
# dev runs the project's server (the gateway injects its token); staging and prod run vLLM
# with the inference logger feeding the prompt sink.
EXTRA = {
    "dev": ["serving/backend-token-filter.yaml"],
    "staging": [
        "serving/prompt-sink-deployment.yaml",
        "serving/prompt-sink-networkpolicy.yaml",
        "serving/prompt-sink-service.yaml",
    ],
}
EXTRA["prod"] = EXTRA["staging"]


def test_render_is_deterministic_and_complete(tmp_path):
    for env in ("dev", "staging", "prod"):
        cfg = load_deploy_config(env)
        first = gitops.render(cfg, model=V1, root=tmp_path / "a")
        gitops.render(cfg, model=V1, root=tmp_path / "b")
        assert first.files == sorted(COMMON + EXTRA[env])
        assert _tree(tmp_path / "a" / env) == _tree(tmp_path / "b" / env)
        # Rendering again over the same folder changes nothing.
        again = gitops.render(cfg, root=tmp_path / "a")
        assert again.diff == ""
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    text = (tmp_path / "a" / "prod" / "serving" / "inferenceservice.yaml").read_text()
    assert "creationTimestamp" not in text and "status" not in yaml.safe_load(text)


def test_rendered_manifests_have_env_specifics(tmp_path):
    dev = load_deploy_config("dev")
    prod = load_deploy_config("prod")
    gitops.render(dev, model=V1, root=tmp_path)
    gitops.render(prod, model=V1, root=tmp_path)

    dev_isvc = _load(tmp_path, "dev", "serving/inferenceservice.yaml")
    prod_isvc = _load(tmp_path, "prod", "serving/inferenceservice.yaml")
    assert dev_isvc["kind"] == "InferenceService"
    assert dev_isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # dev serves on CPU: no GPU toleration, selector or GPU limit.
    assert "tolerations" not in dev_isvc["spec"]["predictor"]
    assert "nodeSelector" not in dev_isvc["spec"]["predictor"]
    assert "nvidia.com/gpu" not in _container(dev_isvc)["resources"]["limits"]
    # prod serves on GPU: toleration nvidia.com/gpu=true:NoSchedule plus node selector.
    predictor = prod_isvc["spec"]["predictor"]
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    assert predictor["nodeSelector"] == {"tuneops.io/accelerator": "nvidia"}
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        prod.serving.min_replicas,
        prod.serving.max_replicas,
    )
    assert predictor["serviceAccountName"] == "model-server"
    # Model by its pinned storage URI; the project's image by an immutable tag.
    assert _storage(prod_isvc) == V1
    image = _container(dev_isvc)["image"]
    assert image.endswith("/tuneops/serve:0.1.0")
    assert _container(dev_isvc)["args"][:3] == ["serve", "--model", "/mnt/models"]
    # App of apps: the root app syncs apps/, which holds the serving app.
    root_app = _load(tmp_path, "prod", "root-app.yaml")
    serving_app = _load(tmp_path, "prod", "apps/serving.yaml")
    assert root_app["spec"]["source"]["path"] == "gitops/envs/prod/apps"
    assert serving_app["spec"]["source"]["path"] == "gitops/envs/prod/serving"
    assert serving_app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_image_digest_pins_the_image(tmp_path):
    digest = "sha256:" + "ab" * 32
    cfg = load_deploy_config("dev", overrides=[f"images.images.serve.digest={digest}"])
    gitops.render(cfg, model=V1, root=tmp_path)
    image = _container(_load(tmp_path, "dev", "serving/inferenceservice.yaml"))["image"]
    assert image.endswith(f"/tuneops/serve@{digest}")


def test_moving_tags_are_refused():
    with pytest.raises(UserError, match="moves"):
        load_deploy_config("dev", overrides=["images.tag=latest"])


def test_canary_full_and_rollback_standard_mode(tmp_path):
    cfg = load_deploy_config("staging")
    gitops.render(cfg, model=V1, root=tmp_path)

    canary = gitops.promote(cfg, model=V2, canary=10, full=False, root=tmp_path)
    assert "+      weight: 10" in canary.diff and "-      weight: 100" in canary.diff
    stable = _load(tmp_path, "staging", "serving/inferenceservice.yaml")
    second = _load(tmp_path, "staging", "serving/inferenceservice-canary.yaml")
    assert _storage(stable) == V1 and _storage(second) == V2
    assert second["metadata"]["name"] == "cloudops-assistant-canary"
    assert second["spec"]["predictor"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    backends = _load(tmp_path, "staging", "serving/httproute.yaml")["spec"]["rules"][0][
        "backendRefs"
    ]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("cloudops-assistant-predictor", 90),
        ("cloudops-assistant-canary-predictor", 10),
    ]

    full = gitops.promote(cfg, model=None, canary=None, full=True, root=tmp_path)
    assert "inferenceservice-canary.yaml" in full.diff
    assert not (tmp_path / "staging" / "serving" / "inferenceservice-canary.yaml").exists()
    assert _storage(_load(tmp_path, "staging", "serving/inferenceservice.yaml")) == V2
    backends = _load(tmp_path, "staging", "serving/httproute.yaml")["spec"]["rules"][0][
        "backendRefs"
    ]
    assert [(b["name"], b["weight"]) for b in backends] == [("cloudops-assistant-predictor", 100)]
    state = gitops.read_state(cfg, tmp_path)
    assert state.stable.storage_uri == V2 and state.previous.storage_uri == V1

    back = gitops.rollback(cfg, root=tmp_path)
    assert back.state.stable.storage_uri == V1 and back.state.previous is None
    assert _storage(_load(tmp_path, "staging", "serving/inferenceservice.yaml")) == V1
    with pytest.raises(UserError, match="no previous version"):
        gitops.rollback(cfg, root=tmp_path)


def test_rollback_during_canary_drops_only_the_canary(tmp_path):
    cfg = load_deploy_config("dev")
    gitops.render(cfg, model=V1, root=tmp_path)
    gitops.promote(cfg, model=V2, canary=25, full=False, root=tmp_path)
    # A plain render keeps the canary; switching models under it is refused.
    assert gitops.render(cfg, root=tmp_path).state.canary.percent == 25
    with pytest.raises(UserError, match="runs a canary"):
        gitops.render(cfg, model="s3://tuneops-dev-artifacts/v3", root=tmp_path)
    result = gitops.rollback(cfg, root=tmp_path)
    assert result.state.canary is None and result.state.stable.storage_uri == V1
    assert not (tmp_path / "dev" / "serving" / "inferenceservice-canary.yaml").exists()


def test_canary_in_knative_mode_uses_canary_traffic_percent(tmp_path):
    cfg = load_deploy_config("dev", overrides=["serving.mode=knative"])
    gitops.render(cfg, model=V1, root=tmp_path)
    gitops.promote(cfg, model=V2, canary=10, full=False, root=tmp_path)
    isvc = _load(tmp_path, "dev", "serving/inferenceservice.yaml")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert _storage(isvc) == V2
    assert not (tmp_path / "dev" / "serving" / "httproute.yaml").exists()
    gitops.promote(cfg, model=None, canary=None, full=True, root=tmp_path)
    isvc = _load(tmp_path, "dev", "serving/inferenceservice.yaml")
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"] and _storage(isvc) == V2


def test_promote_refuses_bad_requests(tmp_path):
    cfg = load_deploy_config("dev")
    with pytest.raises(UserError, match="render --env dev"):
        gitops.promote(cfg, model=V2, canary=10, full=False, root=tmp_path)
    gitops.render(cfg, model=V1, root=tmp_path)
    with pytest.raises(UserError, match="exactly one"):
        gitops.promote(cfg, model=V2, canary=10, full=True, root=tmp_path)
    with pytest.raises(UserError, match="1 to 99"):
        gitops.promote(cfg, model=V2, canary=100, full=False, root=tmp_path)
    with pytest.raises(UserError, match="already serves"):
        gitops.promote(cfg, model=V1, canary=10, full=False, root=tmp_path)
    with pytest.raises(UserError, match="no canary"):
        gitops.promote(cfg, model=None, canary=None, full=True, root=tmp_path)


def test_a_refusing_policy_gate_keeps_the_old_files(tmp_path, monkeypatch):
    cfg = load_deploy_config("dev")
    gitops.render(cfg, model=V1, root=tmp_path)
    before = _tree(tmp_path / "dev")
    seen = []

    def gate(paths):
        seen.extend(paths)
        return policy_gate.PolicyResult(
            "kubernetes", failed=1, failures=["CKV_K8S_TEST: refused for the test"]
        )

    monkeypatch.setattr(policy_gate, "check_manifests", gate)
    monkeypatch.setattr(gitops, "run_manifest_gate", policy_gate.run_manifest_gate)
    with pytest.raises(UserError, match="policy gate refused"):
        gitops.promote(cfg, model=V2, canary=10, full=False, root=tmp_path)
    assert {p.name for p in seen} >= {"inferenceservice-canary.yaml", "httproute.yaml"}
    assert _tree(tmp_path / "dev") == before


def test_models_uri_resolves_through_the_registry(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.create_registered_model("cloudops-assistant")
    one = client.create_model_version("cloudops-assistant", source=V1)
    two = client.create_model_version("cloudops-assistant", source=V2)
    client.set_registered_model_alias("cloudops-assistant", "champion", one.version)

    cfg = load_deploy_config("staging")
    result = gitops.render(cfg, root=tmp_path)  # registry.model: models:/...@champion
    assert result.state.stable.version == str(one.version)
    assert _storage(_load(tmp_path, "staging", "serving/inferenceservice.yaml")) == V1
    isvc = _load(tmp_path, "staging", "serving/inferenceservice.yaml")
    assert isvc["metadata"]["annotations"]["tuneops.io/model-version"] == str(one.version)

    client.set_registered_model_alias("cloudops-assistant", "champion", two.version)
    result = gitops.promote(cfg, model=None, canary=20, full=False, root=tmp_path)
    assert result.state.canary.model.version == str(two.version)

    # staging only takes object-storage URIs: a laptop path is refused before writing.
    local = client.create_model_version("cloudops-assistant", source=str(tmp_path / "m"))
    with pytest.raises(UserError, match="cannot read"):
        gitops.render(cfg, model=f"models:/cloudops-assistant/{local.version}", root=tmp_path)
    with pytest.raises(UserError, match="cannot resolve"):
        gitops.render(cfg, model="models:/no-such-model@champion", root=tmp_path)


def test_cli_prints_diff_and_one_line_errors(tmp_path):
    cmd = [sys.executable, "-m", "tuneops.cli"]
    out = subprocess.run(
        [*cmd, "gitops", "render", "--env", "dev", "--model", V1, "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "+++ b/" in out.stdout and "rendered dev" in out.stdout
    assert "policy gate: " in out.stdout and " 0 failed" in out.stdout  # the real gate ran
    out = subprocess.run(
        [
            *cmd,
            "release",
            "promote",
            "--env",
            "dev",
            "--model",
            V2,
            "--canary",
            "10",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "weight: 10" in out.stdout and "canary" in out.stdout
    bad = subprocess.run(
        [*cmd, "release", "promote", "--env", "nowhere", "--full"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: no deploy config for environment 'nowhere'")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("words", "new"),
    [
        (["gitops", "render", "dev"], "tuneops gitops render --env dev"),
        (["release", "promote", "staging", "--full"], "tuneops release promote --env staging"),
        (["release", "rollback", "prod"], "tuneops release rollback --env prod"),
    ],
)
def test_cli_refuses_the_positional_environment_naming_the_option(words, new):
    bad = subprocess.run(
        [sys.executable, "-m", "tuneops.cli", *words], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: the environment is now an option")
    assert f"`{new}`" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_model_references_other_than_registry_and_s3_are_refused():
    cfg = load_deploy_config("dev")
    assert gitops.resolve_model_version(V1 + "/", cfg).storage_uri == V1
    with pytest.raises(UserError, match="give models:/<name>@<alias>"):
        gitops.resolve_model_version("embedded:smollm2-135m-instruct", cfg)
    with pytest.raises(UserError, match="add @<alias> or /<version>"):
        gitops.resolve_model_version("models:/cloudops-assistant", cfg)


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_project_runtime_serves_behind_a_token_from_a_secret(env):
    from workloads.deploy.manifests import env_manifests
    from workloads.deploy.release import ModelVersion, ReleaseState

    # staging and prod serve on vLLM; their project-runtime fallback needs the token too.
    overrides = [] if env == "dev" else ["serving.runtime=project"]
    cfg = load_deploy_config(env, overrides=overrides)
    files = env_manifests(cfg, ReleaseState(stable=ModelVersion(ref=V1, storage_uri=V1)))
    isvc = files["serving/inferenceservice.yaml"]
    container = _container(isvc)
    (token,) = [e for e in container["env"] if e["name"] == "TUNEOPS_SERVE_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"] == {"name": "model-server-token", "key": "token"}
    args = container["args"]
    assert args[args.index("--set") + 1] == "auth.required=true"
    validate_manifest(isvc, "isvc", cfg.kubernetes_version)


def test_a_render_without_a_token_secret_is_refused_in_one_line():
    from workloads.deploy.manifests import env_manifests
    from workloads.deploy.release import ModelVersion, ReleaseState

    overrides = ["serving.runtime=project", "serving.auth.token_secret=null"]
    cfg = load_deploy_config("prod", overrides=overrides)
    with pytest.raises(UserError, match=r"prod: serving.auth.token_secret is not set"):
        env_manifests(cfg, ReleaseState(stable=ModelVersion(ref=V1, storage_uri=V1)))


def test_a_literal_token_in_the_deploy_config_is_refused():
    with pytest.raises(UserError, match="never a literal"):
        load_deploy_config("staging", overrides=["serving.env.TUNEOPS_SERVE_TOKEN=abc"])


def test_pods_get_a_grace_period_longer_than_the_server_shutdown():
    from workloads.deploy.manifests import env_manifests
    from workloads.deploy.release import ModelVersion, ReleaseState
    from workloads.serve.config import load_serve_config

    server = load_serve_config().server
    assert server.drain_s < server.grace_period_s
    cfg = load_deploy_config("prod")
    files = env_manifests(cfg, ReleaseState(stable=ModelVersion(ref=V1, storage_uri=V1)))
    grace = files["serving/inferenceservice.yaml"]["spec"]["predictor"]
    assert grace["terminationGracePeriodSeconds"] > server.grace_period_s
    short = load_deploy_config("prod", overrides=["serving.termination_grace_s=20"])
    with pytest.raises(UserError, match="termination_grace_s is 20"):
        env_manifests(short, ReleaseState(stable=ModelVersion(ref=V1, storage_uri=V1)))
