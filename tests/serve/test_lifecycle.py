"""Where the server loads models from, and how it stops."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from tuneops.core.errors import UserError
from tuneops.core.tracking import use_experiment
from workloads.serve.process import ServerProcess

FAST = ["dtype=float32", "limits.max_new_tokens=400"]


def chat(server, content="What is a Kubernetes Service?", **kw):
    client = openai.OpenAI(base_url=server.openai_url, api_key=server.token, max_retries=0)
    return client.chat.completions.create(
        model="cloudops-assistant",
        messages=[{"role": "user", "content": content}],
        temperature=0,
        **kw,
    )


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Resolved model copies go to a throwaway cache (the server process inherits it)."""
    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.e2e
def test_loads_from_a_registry_alias(tiny_model_dir, mlflow_uri, private_cache):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(mlflow_uri)
    use_experiment("serve-test")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tiny_model_dir), artifact_path="model")
    client = MlflowClient()
    client.create_registered_model("serve-test-model")
    version = client.create_model_version(
        "serve-test-model", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("serve-test-model", "champion", version.version)

    with ServerProcess("models:/serve-test-model@champion", overrides=FAST) as server:
        reply = chat(server, max_tokens=6)
        assert reply.choices[0].message.content
    assert any((private_cache / "models" / "mlflow").iterdir()), "not resolved through MLflow"

    # A promotion moves the alias; the next server must not load the cached old version.
    from workloads.models.registry import pin_alias

    newer = client.create_model_version(
        "serve-test-model", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    assert pin_alias("models:/serve-test-model@champion") == "models:/serve-test-model/1"
    client.set_registered_model_alias("serve-test-model", "champion", newer.version)
    assert pin_alias("models:/serve-test-model@champion") == "models:/serve-test-model/2"
    with pytest.raises(UserError, match="does not exist in the MLflow registry"):
        pin_alias("models:/serve-test-model@nope")


@pytest.mark.e2e
def test_loads_from_moto_served_s3(tiny_model_dir, private_cache, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        aws = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for key, value in aws.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="models")
        for path in tiny_model_dir.iterdir():
            s3.upload_file(str(path), "models", f"cloudops/v1/{path.name}")

        with ServerProcess("s3://models/cloudops/v1", overrides=FAST) as server:
            assert chat(server, max_tokens=6).choices[0].message.content
    finally:
        moto.stop()


@pytest.mark.e2e
def test_sigterm_drains_in_flight_requests(tiny_model_dir):
    """SIGTERM while a stream and three plain requests are running: all four complete."""
    server = ServerProcess(str(tiny_model_dir), overrides=FAST)
    server.start()
    results: list = []
    errors: list = []

    def call():
        try:
            results.append(chat(server, max_tokens=120))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    try:
        stream = iter(chat(server, max_tokens=120, stream=True))
        first = next(stream)  # the streamed request is in flight
        for t in threads:
            t.start()
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
            for _ in range(200):  # wait until the three plain requests are in too
                if "tuneops_serve_in_flight_requests 5.0" in http.get("/metrics").text:
                    break  # 1 stream + 3 plain + this scrape
                time.sleep(0.05)
        server.terminate()
        rest = list(stream)
        for t in threads:
            t.join(120)
        assert server.proc.wait(60) == 0, server.log_tail()
    finally:
        server.stop()

    pieces = [c.choices[0] for c in [first, *rest] if c.choices]
    assert pieces[-1].finish_reason in {"stop", "length"}, "the stream was cut off"
    assert "".join(p.delta.content or "" for p in pieces)
    assert not errors, errors
    assert len(results) == 3 and all(r.choices[0].message.content for r in results)
    # Once drained and gone, nothing listens on the port any more.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)


@pytest.mark.e2e
def test_sigterm_with_a_full_queue_fails_the_rest_at_the_drain_deadline(tiny_model_dir):
    """Work that cannot finish by server.drain_s ends in a clear 503, and the process exits 0
    inside grace_period_s instead of being killed at the end of it."""
    overrides = [
        *FAST,
        "batching.max_batch=1",  # one sequence at a time: the queue cannot finish in time
        "server.drain_s=2",
        "server.grace_period_s=12",
    ]
    server = ServerProcess(str(tiny_model_dir), overrides=overrides)
    server.start()
    statuses: list[int] = []
    messages: list[str] = []
    refused_at: list[float] = []

    def call():
        body = {"model": "cloudops-assistant", "prompt": "kubectl", "max_tokens": 400}
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as http:
            reply = http.post("/openai/v1/completions", json=body)
        statuses.append(reply.status_code)
        if reply.status_code != 200:
            refused_at.append(time.monotonic())
            messages.append(reply.json()["error"]["message"])

    threads = [threading.Thread(target=call) for _ in range(24)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)  # all 24 are admitted; one decodes, the rest wait
        started = time.monotonic()
        server.terminate()
        for t in threads:
            t.join(30)
        assert server.proc.wait(30) == 0, server.log_tail()
        took = time.monotonic() - started
    finally:
        server.stop()
    # Exit 0 once the drain deadline (2 s) has passed, well inside the grace period (12 s).
    assert 2 <= took < 7, f"exit took {took:.1f} s (drain_s 2, grace_period_s 12)"
    # What was still queued ran until the deadline, not a moment less.
    assert refused_at and min(refused_at) - started >= 2 - 0.1
    assert len(statuses) == 24 and set(statuses) <= {200, 503}, statuses
    assert 503 in statuses, "nothing was left at the deadline; the test did not fill the queue"
    assert all("shutting down" in m for m in messages), messages
    assert "drain deadline" in server.log_path.read_text(encoding="utf-8", errors="replace")


def test_the_drain_deadline_must_fall_inside_the_grace_period():
    from workloads.serve.config import load_serve_config

    with pytest.raises(UserError, match="drain_s must be shorter than grace_period_s"):
        load_serve_config(overrides=["server.drain_s=30", "server.grace_period_s=30"])
    assert load_serve_config().server.drain_s < load_serve_config().server.grace_period_s


def test_without_a_token_the_server_refuses_to_start_in_one_line(tiny_model_dir):
    """Closed by default: no token, no server, and the one line says how to set one or how
    to serve openly on purpose (it comes before the model is loaded)."""
    env = {k: v for k, v in os.environ.items() if k != "TUNEOPS_SERVE_TOKEN"}
    command = [sys.executable, "-m", "tuneops.cli", "serve", "--model", str(tiny_model_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "error: no bearer token is set and auth.required is on: export TUNEOPS_SERVE_TOKEN "
        "or set auth.token_file, or pass --set auth.required=false to serve every route openly"
    ]


def test_a_token_comes_from_the_environment_or_the_secret_file(tmp_path, monkeypatch):
    from workloads.serve.config import load_serve_config, read_token

    monkeypatch.delenv("TUNEOPS_SERVE_TOKEN", raising=False)
    assert load_serve_config().auth.required is True
    with pytest.raises(UserError, match=r"--set auth\.required=false"):
        read_token(load_serve_config())
    assert read_token(load_serve_config(overrides=["auth.required=false"])) is None
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    assert read_token(load_serve_config(overrides=[f"auth.token_file={secret}"])) == "from-file"
    monkeypatch.setenv("TUNEOPS_SERVE_TOKEN", "from-env")
    assert read_token(load_serve_config()) == "from-env"


@pytest.mark.e2e
def test_an_open_server_on_purpose_warns_that_every_route_is_open(tiny_model_dir):
    overrides = [*FAST, "auth.required=false", "auth.token_env=null"]
    with ServerProcess(str(tiny_model_dir), overrides=overrides) as server:
        assert httpx.get(f"{server.openai_url}/models", timeout=30).status_code == 200
        doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "every route of this server is open to anyone who can reach" in log
    # The document says so too: no security scheme, no 401.
    chat = doc["paths"]["/openai/v1/chat/completions"]["post"]
    assert "securitySchemes" not in doc["components"] and "401" not in chat["responses"]


def test_a_server_process_is_never_started_without_a_token(tiny_model_dir):
    first, second = ServerProcess(str(tiny_model_dir)), ServerProcess(str(tiny_model_dir))
    assert len(first.token) >= 32 and first.token != second.token
    assert first.headers == {"Authorization": f"Bearer {first.token}"}
    assert ServerProcess(str(tiny_model_dir), token="given").token == "given"
