"""Shared by the monitor tests: cloud questions like the training set's, a real snapshot of them
to compare sampled prompts against, the drift sink as a real process on loopback, and the
headers KServe's inference logger sends with each event."""

from __future__ import annotations

import random
import sys
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from tuneops.core.paths import REPO_ROOT
from tuneops.core.process import Supervisor, free_port
from workloads.data.snapshot import write_snapshot

# KServe v0.20, pkg/logger/worker.go: CEInferenceRequest / CEInferenceResponse.
REQUEST = "org.kubeflow.serving.inference.request"

TOPICS = {
    "kubernetes": ["pod", "deployment", "service", "ingress", "namespace", "kubectl", "node"],
    "terraform": ["state", "plan", "apply", "module", "provider", "backend", "lock"],
    "helm": ["chart", "release", "values", "rollback", "upgrade", "repository", "template"],
}
VERBS = ["how do I", "why does my", "what is the best way to configure a", "explain the"]


def _cloud_question(rng: random.Random) -> str:
    topic = rng.choice(sorted(TOPICS))
    words = rng.sample(TOPICS[topic], 3)
    return f"{rng.choice(VERBS)} {topic} {words[0]} with {words[1]} and {words[2]}?"


@pytest.fixture
def cloud_question():
    """``cloud_question(rng)``: one question on the snapshot's topics."""
    return _cloud_question


def chat_record(i: int, question: str) -> dict:
    return {
        "id": f"r{i}",
        "kind": "chat",
        "source": "test",
        "category": None,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": "Use the documented command."},
        ],
    }


@pytest.fixture
def snapshot(tmp_path):
    rng = random.Random(0)
    train = [chat_record(i, _cloud_question(rng)) for i in range(300)]
    return write_snapshot(
        "drifttest",
        {"train": train, "validation": [], "test": []},
        {},
        [],
        "card",
        root=tmp_path / "datasets",
    )


def _logger_headers(ce_type: str = REQUEST, content_type: str = "application/json") -> dict:
    """The headers of one event from KServe v0.20's logger (pkg/logger/worker.go, binary mode
    through the CloudEvents Go SDK): the attributes and extensions its worker sets (id, type,
    time, source = the pod name, recordedtime, inferenceservicename, namespace, component,
    endpoint, metadata) in the SDK's canonical header case, and the client's Content-Type."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    headers = {
        "User-Agent": "Go-http-client/1.1",
        "Ce-Id": str(uuid.uuid4()),
        "Ce-Specversion": "1.0",
        "Ce-Type": ce_type,
        "Ce-Source": "cloudops-assistant-predictor-7d9f8b6c5-x2x4q",
        "Ce-Time": now,
        "Ce-Recordedtime": now,
        "Ce-Inferenceservicename": "cloudops-assistant",
        "Ce-Namespace": "serving",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "",
        "Ce-Metadata": "{}",
    }
    if content_type:
        headers["Content-Type"] = content_type
    return headers


@pytest.fixture
def logger_headers():
    """``logger_headers(ce_type=..., content_type=...)``: one event's headers."""
    return _logger_headers


def _answers(url: str, ca: str | None) -> bool:
    try:
        return httpx.get(url, timeout=2, verify=ca or True).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_sink():
    """``start_sink(*overrides, log=..., env=..., scheme=..., ca=...)``: a sink process on a
    free loopback port, healthy, with ``.url``; every one started is stopped at teardown."""
    started: list[Supervisor] = []

    def start(*overrides: str, log: str, env=None, scheme="http", ca=None) -> Supervisor:
        port = free_port()
        command = [sys.executable, "-m", "tuneops.cli", "monitor", "sink"]
        command += ["--host", "127.0.0.1", "--port", str(port), "--log", log]
        for item in overrides:
            command += ["--set", item]
        url = f"{scheme}://127.0.0.1:{port}"
        sink = Supervisor(
            command,
            name="the drift sink",
            env={"PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=REPO_ROOT,
            ready=lambda: _answers(f"{url}/healthz", ca),
            start_timeout=60,
        )
        started.append(sink)
        sink.start()
        sink.url = url  # type: ignore[attr-defined]
        return sink

    yield start
    for sink in started:
        sink.stop()
