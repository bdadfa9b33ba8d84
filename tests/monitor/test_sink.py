"""The drift sampling sink as a real process on loopback, fed CloudEvents exactly as KServe
v0.20's inference logger sends them (pkg/logger/worker.go: binary mode through the CloudEvents
Go SDK), writing to moto's S3 server, read back by `tuneops monitor drift`."""

from __future__ import annotations

import json
import random
import re
import time

import boto3
import httpx
import pytest
from cloudevents.http import from_http
from moto.server import ThreadedMotoServer
from typer.testing import CliRunner

from tuneops.cli import app
from tuneops.core.process import Supervisor

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "jane.doe@example.com"


def chat_body(*messages: tuple[str, str]) -> bytes:
    turns = [{"role": role, "content": content} for role, content in messages]
    return json.dumps({"model": "cloudops-assistant", "messages": turns, "max_tokens": 64}).encode()


def completion_body(prompt) -> bytes:
    return json.dumps({"model": "cloudops-assistant", "prompt": prompt, "max_tokens": 32}).encode()


@pytest.fixture
def s3(monkeypatch):
    """moto's S3 server on loopback with a ``drift`` bucket; yields the env a child needs."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="drift")
    yield env
    server.stop()


def s3_keys(prefix: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket="drift", Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def s3_records(prefix: str) -> list[dict]:
    s3 = boto3.client("s3")
    bodies = [s3.get_object(Bucket="drift", Key=k)["Body"].read() for k in s3_keys(prefix)]
    return [json.loads(line) for body in bodies for line in body.decode().splitlines()]


def stop_cleanly(sink: Supervisor) -> int:
    sink.terminate()
    return sink.proc.wait(30)


def test_the_logger_events_parse_as_cloudevents(logger_headers):
    """The test's events are what a CloudEvents receiver reads as KServe's logger events."""
    event = from_http(logger_headers(), completion_body("hi"))
    assert event["type"] == REQUEST and event["specversion"] == "1.0"
    assert event["inferenceservicename"] == "cloudops-assistant"
    assert event["component"] == "predictor" and event["datacontenttype"] == "application/json"


def test_sink_scrubs_samples_to_s3_and_drift_reads_it(
    s3, snapshot, cloud_question, start_sink, logger_headers
):
    """Rate 1: every request prompt arrives scrubbed, responses are ignored, full objects are
    written as they fill and the remainder at SIGTERM, and the drift command reads them."""
    rng = random.Random(7)
    questions = [cloud_question(rng) for _ in range(30)]
    secret = f"{questions[0]} my key is {AWS_KEY}, mail {EMAIL}"
    bodies = [chat_body(("system", "You are terse."), ("user", secret))]
    bodies += [chat_body(("user", q)) for q in questions[1:20]]
    bodies += [completion_body(q) for q in questions[20:26]]
    bodies.append(completion_body(questions[26:30]))  # one request, four prompts
    sink = start_sink("sink.rate=1.0", "sink.flush_every=8", env=s3, log="s3://drift/sink/prompts")
    try:
        with httpx.Client(base_url=sink.url, timeout=10) as http:
            for body in bodies:
                reply = http.post("/events", content=body, headers=logger_headers())
                assert reply.status_code == 200, reply.text
                answer = {"text": "not a prompt", "choices": [{"text": EMAIL}]}
                ignored = http.post(
                    "/events", content=json.dumps(answer), headers=logger_headers(RESPONSE)
                )
                assert ignored.status_code == 202, ignored.text
            metrics = http.get("/metrics").text
        assert 'tuneops_sink_prompts_total{route="chat",sampled="true"} 20.0' in metrics
        assert 'tuneops_sink_prompts_total{route="completion",sampled="true"} 10.0' in metrics
        assert 'tuneops_sink_events_ignored_total{reason="response"} 27.0' in metrics
        deadline = time.monotonic() + 20
        while len(s3_keys("sink/prompts/")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(s3_keys("sink/prompts/")) == 3, "full objects (3 x 8) are written as they fill"
        scrape = httpx.get(f"{sink.url}/metrics").text
        written = re.search(r"^tuneops_sink_prompts_written_total (\S+)$", scrape, re.M)
        assert written and float(written[1]) >= 24
        assert stop_cleanly(sink) == 0, sink.log_tail()
    finally:
        sink.stop()

    assert len(s3_keys("sink/prompts/")) == 4, "the remainder was not written at SIGTERM"
    records = s3_records("sink/prompts/")
    assert len(records) == 30
    assert all(set(r) == {"ts", "route", "prompt", "redactions"} for r in records)
    by_prompt = {r["prompt"]: r for r in records}
    scrubbed = next(r for r in records if "<AWS_ACCESS_KEY>" in r["prompt"])
    assert scrubbed["route"] == "chat" and "<EMAIL>" in scrubbed["prompt"]
    assert scrubbed["redactions"] == {"aws_access_key": 1, "email": 1}
    assert not any(AWS_KEY in r["prompt"] or EMAIL in r["prompt"] for r in records)
    assert all(by_prompt[q]["route"] == "chat" for q in questions[1:20])
    assert all(by_prompt[q]["route"] == "completion" for q in questions[20:30])
    assert "You are terse." not in by_prompt, "a system message was sampled, not the user's"

    report_path = snapshot.path.parent / "report.json"
    result = CliRunner().invoke(
        app,
        ["monitor", "drift", "--prompts", "s3://drift/sink/prompts", "--dataset",
         str(snapshot.path), "--output", str(report_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(report_path.read_text())["prompts"] == 30


def test_rate_zero_writes_nothing(s3, start_sink, logger_headers):
    sink = start_sink("sink.rate=0", env=s3, log="s3://drift/none/prompts")
    try:
        with httpx.Client(base_url=sink.url, timeout=10) as http:
            for i in range(10):
                body = chat_body(("user", f"how do I roll back helm release {i}?"))
                reply = http.post("/events", content=body, headers=logger_headers())
                assert reply.status_code == 200 and reply.json()["sampled"] == 0
            metrics = http.get("/metrics").text
        assert 'tuneops_sink_prompts_total{route="chat",sampled="false"} 10.0' in metrics
        assert stop_cleanly(sink) == 0, sink.log_tail()
    finally:
        sink.stop()
    assert s3_keys("none/") == []


def _chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b"x" * size


def bad_events(logger_headers) -> list[tuple[str, str, dict, object, int]]:
    """(name, method, headers, body, expected status): each a way an event can be wrong."""
    good = completion_body("how do I taint a node?")
    cases = [
        ("10 MB body", "POST", logger_headers(), b"x" * (10 * 1024 * 1024), 413),
        ("2 MB chunked body", "POST", logger_headers(), _chunks(2 * 1024 * 1024), 413),
        ("malformed JSON", "POST", logger_headers(), b'{"prompt": "unfinished', 400),
        ("JSON array", "POST", logger_headers(), b'["how do I"]', 400),
        ("invalid UTF-8", "POST", logger_headers(), b'{"prompt": "caf\xe9"}', 400),
        ("lone surrogate", "POST", logger_headers(), b'{"prompt": "\\ud800 why"}', 400),
        ("prompt a number", "POST", logger_headers(), completion_body(42), 400),
        ("messages a string", "POST", logger_headers(), b'{"messages": "hi"}', 400),
        ("text/plain", "POST", logger_headers(content_type="text/plain"), good, 415),
        ("form", "POST", logger_headers(content_type="application/x-www-form-urlencoded"),
         good, 415),
        ("latin-1 JSON", "POST", logger_headers(content_type="application/json; charset=latin-1"),
         good, 415),
        ("unknown ce-type", "POST", {**logger_headers(), "Ce-Type": "com.example.other"}, good,
         400),
        ("ce-specversion 0.3", "POST", {**logger_headers(), "Ce-Specversion": "0.3"}, good, 400),
        ("GET on ingest", "GET", {}, None, 405),
        ("PUT on health", "PUT", {}, None, 405),
        ("unknown path", "POST", logger_headers(), good, 404),
    ]  # fmt: skip
    for header in ("Ce-Id", "Ce-Specversion", "Ce-Source", "Ce-Type"):
        headers = {k: v for k, v in logger_headers().items() if k != header}
        cases.append((f"no {header}", "POST", headers, good, 400))
    return cases


def test_bad_input_is_a_4xx_and_health_keeps_answering(tmp_path, start_sink, logger_headers):
    log = tmp_path / "prompts.jsonl"
    sink = start_sink("sink.rate=1.0", log=str(log))
    probes: list[int] = []
    try:
        with httpx.Client(base_url=sink.url, timeout=10) as http:
            for name, method, headers, body, expected in bad_events(logger_headers):
                path = {"unknown path": "/v1/events", "PUT on health": "/healthz"}.get(
                    name, "/events"
                )
                reply = http.request(method, path, headers=headers, content=body)
                assert reply.status_code == expected, (name, reply.status_code, reply.text)
                assert "error" in reply.json(), name
                if expected == 405:
                    assert reply.headers["allow"], name
                probes.append(http.get("/healthz", timeout=2).status_code)
            good = chat_body(("user", "how do I drain a node?"))
            assert http.post("/events", content=good, headers=logger_headers()).status_code == 200
            metrics = http.get("/metrics").text
        assert stop_cleanly(sink) == 0, sink.log_tail()
    finally:
        sink.stop()
    assert probes == [200] * len(probes)
    assert 'tuneops_sink_events_rejected_total{reason="too_large"} 2.0' in metrics
    assert 'tuneops_sink_events_rejected_total{reason="headers"} 6.0' in metrics
    assert 'tuneops_sink_requests_total{status="415"} 3.0' in metrics
    assert "Traceback" not in sink.log_tail(200)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["prompt"] for r in records] == ["how do I drain a node?"]
