"""What the rendered serving manifests put in front of the model and how they serve it: vLLM on
KServe's Hugging Face runtime on the GPU, LoRA serving, KEDA autoscaling on LLM signals, the
gateway's JWT auth, TLS listener and per-user rate limit, the network policy, and the prompt
sink the inference logger feeds."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import yaml

from infra.catalog import load_catalog, values_for
from tuneops.core.errors import UserError
from tuneops.core.paths import REPO_ROOT
from workloads.deploy import gitops
from workloads.deploy.config import load_deploy_config

V1 = "s3://tuneops-staging-artifacts/1/models/m-v1/artifacts"
SCHEMAS = REPO_ROOT / "workloads" / "deploy" / "schemas"


@pytest.fixture(autouse=True)
def _no_policy_gate(monkeypatch):
    """Rendering is under test here; the policy gate has tests of its own."""
    monkeypatch.setattr(gitops, "run_manifest_gate", lambda paths: "skipped")


def _render(tmp_path: Path, env: str, overrides: list[str] | None = None, model: str = V1):
    cfg = load_deploy_config(env, overrides=overrides)
    gitops.render(cfg, model=model, root=tmp_path)
    folder = tmp_path / env / "serving"
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_gpu_environments_serve_through_vllm_on_the_hugging_face_runtime(tmp_path, env):
    files = _render(tmp_path, env)
    isvc = files["inferenceservice.yaml"]
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert "containers" not in predictor  # no project image on this runtime
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["runtime"] == "kserve-huggingfaceserver"
    assert model["storageUri"] == V1
    assert "--backend=vllm" in model["args"]
    # Stable and canary answer to the same name, whatever their InferenceService is called.
    assert "--model_name=cloudops-assistant" in model["args"]
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert predictor["nodeSelector"] == {"tuneops.io/accelerator": "nvidia"}
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # KServe makes no public route of its own: the guarded HTTPRoute is the only way in.
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"


def test_keda_scales_on_the_configured_queries_filled_in_per_inference_service(tmp_path):
    cfg = load_deploy_config("prod")
    gitops.render(cfg, model=V1, root=tmp_path)
    result = gitops.promote(cfg, model=V1.replace("v1", "v2"), canary=10, full=False, root=tmp_path)
    assert result.state.canary is not None
    serving = tmp_path / "prod" / "serving"
    for name, isvc_name in (
        ("inferenceservice.yaml", "cloudops-assistant"),
        ("inferenceservice-canary.yaml", "cloudops-assistant-canary"),
    ):
        isvc = yaml.safe_load((serving / name).read_text())
        annotations = isvc["metadata"]["annotations"]
        assert annotations["serving.kserve.io/autoscalerClass"] == "keda"
        predictor = isvc["spec"]["predictor"]
        assert "scaleMetric" not in predictor  # KEDA's metrics, not the HPA's
        metrics = predictor["autoScaling"]["metrics"]
        queries = [m["external"]["metric"]["query"] for m in metrics]
        assert all(f'pod=~"{isvc_name}-predictor-.*"' in q for q in queries)
        assert all('namespace="tuneops"' in q for q in queries)
        assert any("vllm:num_requests_waiting" in q for q in queries)
        assert any("vllm:time_to_first_token_seconds_bucket" in q for q in queries)
        assert {m["external"]["metric"]["backend"] for m in metrics} == {"prometheus"}


def test_an_unknown_query_placeholder_is_refused():
    with pytest.raises(UserError, match="unknown placeholder"):
        load_deploy_config(
            "dev", overrides=["serving.autoscaling.metrics.0.query=sum(x{{pod='{model}'}})"]
        )


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_the_gateway_authenticates_terminates_tls_and_limits_each_user(tmp_path, env):
    files = _render(tmp_path, env)
    cfg = load_deploy_config(env)
    route = files["httproute.yaml"]
    (parent,) = route["spec"]["parentRefs"]
    assert parent["sectionName"] == "https"
    target = [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "HTTPRoute",
            "name": "cloudops-assistant-traffic",
        }
    ]

    policy = files["securitypolicy.yaml"]
    assert policy["spec"]["targetRefs"] == target
    (provider,) = policy["spec"]["jwt"]["providers"]
    assert provider["issuer"] == cfg.route.auth.jwt.issuer
    assert provider["remoteJWKS"]["uri"].startswith("https://")
    assert provider["claimToHeaders"] == [{"claim": "sub", "header": "x-tuneops-user"}]

    limits = files["ratelimit.yaml"]["spec"]
    assert limits["targetRefs"] == target
    (rule,) = limits["rateLimit"]["local"]["rules"]
    assert rule["clientSelectors"] == [
        {"headers": [{"name": "x-tuneops-user", "type": "Distinct"}]}
    ]

    # The listener the route names terminates TLS with the certificate the platform issues
    # for this environment's hostnames, and there is no plain-HTTP listener.
    releases = {r.name: r for r in load_catalog().releases}
    gateway = next(
        m
        for m in values_for(releases["kserve-gateway"], env)["resources"]
        if m["kind"] == "Gateway"
    )
    listeners = gateway["spec"]["listeners"]
    assert [(lst["name"], lst["protocol"]) for lst in listeners] == [("https", "HTTPS")]
    (secret_ref,) = listeners[0]["tls"]["certificateRefs"]
    (certificate,) = values_for(releases["gateway-certificate"], env)["resources"]
    assert certificate["spec"]["secretName"] == secret_ref["name"]
    assert certificate["spec"]["issuerRef"]["name"] == "tuneops-ca"
    for host in route["spec"]["hostnames"]:
        assert any(fnmatch.fnmatch(host, pattern) for pattern in certificate["spec"]["dnsNames"])


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_a_render_without_gateway_auth_is_refused_in_one_line(tmp_path, env):
    with pytest.raises(UserError) as err:
        _render(tmp_path, env, overrides=["route.auth.jwt=null"])
    assert "route.auth.jwt is not set" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / env).exists()


def test_the_project_runtime_gets_the_server_token_injected_by_the_gateway(tmp_path):
    files = _render(tmp_path, "dev")
    (rule,) = files["httproute.yaml"]["spec"]["rules"]
    (ref,) = rule["filters"]
    assert ref["extensionRef"] == {
        "group": "gateway.envoyproxy.io",
        "kind": "HTTPRouteFilter",
        "name": "cloudops-assistant-backend-token",
    }
    injection = files["backend-token-filter.yaml"]["spec"]["credentialInjection"]
    assert injection["overwrite"] is True
    assert injection["credential"]["valueRef"]["name"] == "model-server-token"
    # Prometheus scrapes the server's /metrics with the same Secret.
    (endpoint,) = files["podmonitor.yaml"]["spec"]["podMetricsEndpoints"]
    assert endpoint["authorization"]["credentials"] == {
        "name": "model-server-token",
        "key": "token",
    }


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_only_the_gateway_and_prometheus_reach_the_model_pods(tmp_path, env):
    files = _render(tmp_path, env)
    policy = files["networkpolicy.yaml"]["spec"]
    (selector,) = policy["podSelector"]["matchExpressions"]
    assert selector["values"] == ["cloudops-assistant", "cloudops-assistant-canary"]
    (ingress,) = policy["ingress"]
    allowed = {
        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for f in ingress["from"]
    }
    assert allowed == {"envoy-gateway-system", "monitoring"}
    ports = {p["port"] for p in ingress["ports"]}
    # prod logs prompts: the logger agent KServe puts in front of the server listens on 9081.
    assert ports == ({8080, 9081} if env == "prod" else {8080})


def test_the_inference_logger_feeds_the_prompt_sink(tmp_path):
    files = _render(tmp_path, "prod")
    logger = files["inferenceservice.yaml"]["spec"]["predictor"]["logger"]
    assert logger == {
        "mode": "request",
        "url": "http://prompt-sink.tuneops.svc.cluster.local:8090/events",
    }
    deployment = files["prompt-sink-deployment.yaml"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["monitor", "sink"]
    args = container["args"]
    assert args[args.index("--log") + 1] == "s3://tuneops-prod-333333333333-artifacts/prompts"
    assert "sink.auth.network_policy=true" in args
    service = files["prompt-sink-service.yaml"]
    assert service["spec"]["ports"][0]["port"] == 8090
    sources = files["prompt-sink-networkpolicy.yaml"]["spec"]["ingress"][0]["from"]
    model_pods = sources[0]["podSelector"]["matchExpressions"][0]["values"]
    assert model_pods == ["cloudops-assistant", "cloudops-assistant-canary"]


def test_knative_mode_with_the_hugging_face_runtime_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"use serving\.mode standard"):
        _render(tmp_path, "prod", overrides=["serving.mode=knative"])


def test_the_hugging_face_runtime_needs_a_gpu():
    with pytest.raises(UserError, match="needs gpu: true"):
        load_deploy_config("prod", overrides=["serving.gpu=false"])


def _registered_lora_version(client, tmp_path: Path, rank: int) -> str:
    """A registered base, and a fine-tuned version whose run logged adapter/ and its base."""
    client.create_registered_model("smollm2-base")
    base = client.create_model_version("smollm2-base", source="s3://tuneops-base/smollm2")
    experiment = client.create_experiment("lora")
    run = client.create_run(experiment, tags={"tuneops.base_model": "models:/smollm2-base/1"})
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    client.log_artifacts(run.info.run_id, str(adapter), "adapter")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("cloudops-assistant")
    version = client.create_model_version(
        "cloudops-assistant", source="s3://tuneops-staging/merged", run_id=run.info.run_id
    )
    assert str(base.version) == "1"
    return f"models:/cloudops-assistant/{version.version}"


def test_a_lora_version_is_served_as_its_adapter_on_the_registered_base(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    ref = _registered_lora_version(client, tmp_path, rank=16)
    overrides = ["serving.huggingface.lora=true", "registry.require_s3=false"]
    files = _render(tmp_path / "out", "staging", overrides=overrides, model=ref)
    predictor = files["inferenceservice.yaml"]["spec"]["predictor"]
    assert "storageUri" not in predictor["model"]
    uris = {s["mountPath"]: s["uri"] for s in predictor["storageUris"]}
    assert uris["/mnt/models/base"] == "s3://tuneops-base/smollm2"
    assert uris["/mnt/models/adapter"].endswith("/adapter")
    args = predictor["model"]["args"]
    assert "--enable-lora" in args
    assert "--lora-modules=cloudops-assistant=/mnt/models/adapter" in args
    assert "--model_dir=/mnt/models/base" in args

    # An adapter of a higher rank than vLLM is told to accept is refused at render time.
    with pytest.raises(UserError, match="adapter rank 16 is over"):
        _render(
            tmp_path / "low",
            "staging",
            overrides=[*overrides, "serving.huggingface.max_lora_rank=8"],
            model=ref,
        )


def test_a_lora_render_of_a_version_without_an_adapter_is_refused(tmp_path, mlflow_uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    client.create_registered_model("cloudops-assistant")
    version = client.create_model_version("cloudops-assistant", source=V1)
    overrides = ["serving.huggingface.lora=true"]
    with pytest.raises(UserError, match="no source run"):
        _render(
            tmp_path, "staging", overrides, model=f"models:/cloudops-assistant/{version.version}"
        )


def _locked(package: str) -> str:
    lock = (REPO_ROOT / "requirements.lock").read_text().splitlines()
    (line,) = [entry for entry in lock if entry.lower().startswith(f"{package}==")]
    return line.split("==", 1)[1]


def _minor(version: str) -> tuple[str, str]:
    major, minor = version.lstrip("v").split(".")[:2]
    return major, minor


def test_chart_pins_agree_with_the_vendored_schemas_and_the_sdk():
    releases = {r.name: r for r in load_catalog().releases}
    kserve = {releases[n].version for n in ("kserve-crd", "kserve", "kserve-runtimes")}
    assert len(kserve) == 1, f"KServe charts pinned at different versions: {kserve}"
    assert _minor(kserve.pop()) == _minor(_locked("kserve"))
    # Every chart whose CRD schemas are vendored is pinned at the version they came from.
    sources = yaml.safe_load((SCHEMAS / "upstream.yaml").read_text())["sources"]
    pinned = {r.chart: r.version for r in releases.values()}
    checked = 0
    for source in sources:
        if source["chart"] in pinned:
            assert pinned[source["chart"]] == source["chart_version"], source["project"]
            checked += 1
    assert checked >= 7
