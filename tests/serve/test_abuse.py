"""The server as an attacker and a careless client meet it: real server processes on loopback.

- every route of ``/openapi.json``, by every method, is 401 without the token (and with a
  wrong one) except the named probes;
- planted bad inputs each get their 4xx within a second while a liveness probe on another
  connection keeps answering within 100 ms;
- a request refused with 429 (queue full, or too many in flight from one client) leaves
  nothing of itself in the engine, read from the server's own gauges and counters;
- a client that goes away mid-stream, mid-request or while queued frees its slot at once.

SIGTERM with a full queue is in ``test_lifecycle.py``; the request head limits (431, 408) in
``test_http_guard.py``.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from workloads.serve.process import ServerProcess

MODEL_NAME = "cloudops-assistant"  # the name tests/serve/conftest.py serves under
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# The kubelet's probes: a GET or HEAD of these reaches the server without a token.
PROBES = {
    "/v2/health/live",
    "/v2/health/ready",
    "/v1/models/{model_name}",
    "/v2/models/{model_name}/ready",
}


def concrete(template: str) -> str:
    return template.replace("{model_name}", MODEL_NAME).replace("{model_version}", "1")


def test_every_documented_route_needs_the_token_except_the_probes(server):
    doc = httpx.get(f"{server.url}/openapi.json", headers=server.headers, timeout=30).json()
    assert len(doc["paths"]) >= 15
    checked = 0
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        for template in doc["paths"]:
            for method in METHODS:
                path = concrete(template)
                reply = anon.request(method, path)
                wrong = anon.request(method, path, headers={"Authorization": "Bearer wrong"})
                basic = anon.request(method, path, headers={"Authorization": "Basic dXNlcg=="})
                statuses = {reply.status_code, wrong.status_code, basic.status_code}
                # A probe is a GET; a HEAD of one passes auth as a read, and KServe's routes
                # answer it 405 (GET only).
                expected = {"GET": 200, "HEAD": 405}.get(method, 401) if template in PROBES else 401
                assert statuses == {expected}, (method, path, statuses)
                checked += 1
        # Neither is the document itself, its pages, nor "/" (it says only what liveness says).
        for path in ("/openapi.json", "/docs", "/redoc", "/", "/metrics", "/no/such/route"):
            assert anon.get(path).status_code == 401, path
        # A token in the query string is not a token.
        assert anon.get("/openai/v1/models", params={"api_key": server.token}).status_code == 401
    assert checked == len(doc["paths"]) * len(METHODS)


class Prober:
    """Asks ``/v2/health/live`` every 10 ms on a connection of its own, timing each answer."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=5)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            reply = self.client.get("/v2/health/live")
            self.latencies.append(time.perf_counter() - started)
            if reply.status_code != 200:
                self.failures.append(reply.text)
            self._stop.wait(0.01)

    def __enter__(self) -> Prober:
        self.client.get("/v2/health/live")  # connected before timing starts
        self._thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.05)
        self._stop.set()
        self._thread.join(5)
        self.client.close()


def _chat(**extra) -> dict:
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], **extra}


BYTES = {"name": "text", "shape": [300], "datatype": "BYTES", "data": ["kubectl"] * 300}
BAD_INPUTS = {
    "10 MB body": ("/openai/v1/chat/completions", b"{" + b" " * (10 << 20) + b"}", 413),
    "10 MB body, v2": (f"/v2/models/{MODEL_NAME}/infer", b" " * (10 << 20), 413),
    "300 prompts": (
        "/openai/v1/completions",
        {"model": MODEL_NAME, "prompt": ["kubectl"] * 300, "max_tokens": 2},
        400,
    ),
    "300 prompts, v1": (f"/v1/models/{MODEL_NAME}:predict", {"instances": ["k"] * 300}, 400),
    "300 prompts, v2": (f"/v2/models/{MODEL_NAME}/infer", {"inputs": [BYTES]}, 400),
    "invalid UTF-8": (
        "/openai/v1/chat/completions",
        b'{"model": "cloudops-assistant", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
        400,
    ),
    "invalid UTF-8, v1": (f"/v1/models/{MODEL_NAME}:predict", b'{"instances": ["\xff"]}', 400),
    "invalid UTF-8, v2": (
        f"/v2/models/{MODEL_NAME}/infer",
        b'{"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["\xfe"]}]}',
        400,
    ),
    "unsupported field tools": (
        "/openai/v1/chat/completions",
        _chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
        400,
    ),
    "unsupported field response_format": (
        "/openai/v1/chat/completions",
        _chat(response_format={"type": "json_object"}),
        400,
    ),
    "unsupported field logprobs": ("/openai/v1/chat/completions", _chat(logprobs=True), 400),
    "unknown field max_token": ("/openai/v1/chat/completions", _chat(max_token=5), 400),
    "n=5": ("/openai/v1/chat/completions", _chat(n=5), 400),
    "deeply nested JSON": ("/openai/v1/completions", b"[" * 100_000 + b"]" * 100_000, 400),
    "1 MB prompt": (
        "/openai/v1/completions",
        {"model": MODEL_NAME, "prompt": "kubectl " * 120_000, "max_tokens": 2},
        400,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_within_a_second_while_probes_answer(server, case):
    path, body, status = BAD_INPUTS[case]
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    headers = {**server.headers, "content-type": "application/json"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        with Prober(server.url) as prober:
            started = time.perf_counter()
            reply = http.post(path, **kwargs)
            took = time.perf_counter() - started
        assert reply.status_code == status, reply.text[:300]
        assert reply.json()["error"], "an error names what is wrong"
        assert took < 1.0, f"{case}: answered in {took:.2f} s"
        assert prober.latencies and not prober.failures
        assert max(prober.latencies) < 0.1, f"liveness took {max(prober.latencies):.3f} s"
        error = reply.json()["error"]
        message = error["message"] if isinstance(error, dict) else error
        if case.startswith("unsupported field"):
            assert f"{case.removeprefix('unsupported field ')} is not supported" in message
        if case.startswith("unknown field"):
            field = case.removeprefix("unknown field ")
            assert f"{field}: Extra inputs are not permitted" in message
        assert http.get("/v2/health/ready").status_code == 200


# ---- the engine after refusals and departures -----------------------------------------------

LONG = 900  # new tokens: seconds of decoding at batch 1 on the tiny model


@pytest.fixture(scope="module")
def tight(tiny_model_dir):
    """One sequence at a time, two waiting at most, three requests in flight per client."""
    overrides = [
        "dtype=float32",
        f"limits.max_new_tokens={LONG}",
        "limits.max_prompt_tokens=64",
        "limits.max_queue=2",
        "limits.max_in_flight_per_client=3",
        "batching.max_batch=1",
    ]
    with ServerProcess(str(tiny_model_dir), name=MODEL_NAME, overrides=overrides) as proc:
        yield proc


def gauges(server) -> dict[str, float]:
    """The server's own metrics, scraped from 127.0.0.2: another client address, so the
    scrape never counts against the per-client limit of the requests under test."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, headers=server.headers, timeout=10) as scraper:
        text = scraper.get(f"{server.url}/metrics").text
    samples = {}
    for line in text.splitlines():
        if line.startswith("tuneops_serve_") and "{" not in line:
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def wait_for(server, name: str, value: float, within: float) -> float:
    """Seconds until gauge ``name`` reads ``value`` (fails after ``within``)."""
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        if gauges(server)[name] == value:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise AssertionError(f"{name} is {gauges(server)[name]}, not {value}, after {within} s")


def wait_settled(server, within: float = 10) -> None:
    """Wait until the server handles no request but the scrape itself: a handler still
    finishing for a client that left holds that client's in-flight place until it returns."""
    wait_for(server, "tuneops_serve_in_flight_requests", 1, within=within)
    wait_for(server, "tuneops_serve_running_sequences", 0, within=within)


def completion(prompt: str | list[str], max_tokens: int, **extra) -> dict:
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    return {**body, **extra}


def test_a_refused_request_leaves_nothing_of_itself_in_the_engine(tight):
    """Queue full, then too many in flight from one client: both 429 with Retry-After, and
    neither refused request is queued, decoded or even prefilled."""
    before = gauges(tight)
    answers: dict[str, httpx.Response] = {}

    def ask(name: str) -> threading.Thread:
        def post() -> None:
            answers[name] = httpx.post(
                f"{tight.openai_url}/completions",
                json=completion("kubectl", 4),
                headers=tight.headers,
                timeout=60,
            )

        thread = threading.Thread(target=post)
        thread.start()
        return thread

    with httpx.Client(base_url=tight.url, headers=tight.headers, timeout=60) as http:
        body = completion("kubectl", LONG, stream=True)
        with http.stream("POST", "/openai/v1/completions", json=body) as running:
            lines = running.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)  # decoding: the one batch slot is taken
            wait_for(tight, "tuneops_serve_running_sequences", 1, within=5)
            waiting = ask("waiting")
            wait_for(tight, "tuneops_serve_queue_depth", 1, within=5)
            # Two more prompts do not fit beside the one waiting: all or nothing, so none.
            full = http.post("/openai/v1/completions", json=completion(["kubectl", "helm"], 4))
            assert full.status_code == 429 and full.headers["retry-after"] == "1"
            assert "server busy" in full.json()["error"]["message"]
            assert gauges(tight)["tuneops_serve_queue_depth"] == 1
            # The stream and the waiting request are in flight; a third fits, a fourth not.
            third = ask("third")
            wait_for(tight, "tuneops_serve_queue_depth", 2, within=5)
            over = http.post("/openai/v1/completions", json=completion("kubectl", 4))
            assert over.status_code == 429 and over.headers["retry-after"] == "1"
            assert "requests in flight from this client" in over.json()["error"]["message"]
            now = gauges(tight)
            assert now["tuneops_serve_queue_depth"] == 2
            assert now["tuneops_serve_running_sequences"] == 1
        # The stream's client has gone: the two waiting requests run and finish.
        waiting.join(60)
        third.join(60)
    assert answers["waiting"].status_code == answers["third"].status_code == 200
    wait_for(tight, "tuneops_serve_running_sequences", 0, within=5)
    after = gauges(tight)
    assert after["tuneops_serve_queue_depth"] == 0
    # Prefilled: the stream's prompt and the two admitted ones, never a refused one.
    prompt = answers["waiting"].json()["usage"]["prompt_tokens"]
    prefilled = (
        after["tuneops_serve_prompt_tokens_total"] - before["tuneops_serve_prompt_tokens_total"]
    )
    assert prefilled == 3 * prompt


def open_request(server, body: dict) -> socket.socket:
    """A request sent on a bare socket, so the test decides when the client vanishes."""
    data = json.dumps(body).encode()
    head = (
        "POST /openai/v1/completions HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(head.encode() + data)
    return sock


def test_a_client_gone_mid_stream_frees_its_slot_within_a_step(tight):
    sock = open_request(tight, completion("kubectl", LONG, stream=True))
    received = b""
    while received.count(b"data: ") < 3:  # three chunks in: it is decoding
        received += sock.recv(4096)
    at_close = gauges(tight)["tuneops_serve_generated_tokens_total"]
    sock.close()
    took = wait_for(tight, "tuneops_serve_running_sequences", 0, within=2)
    settled = gauges(tight)["tuneops_serve_generated_tokens_total"]
    time.sleep(0.2)
    assert gauges(tight)["tuneops_serve_generated_tokens_total"] == settled, "still decoding"
    # A step takes milliseconds: the tokens counted are those decoded between the scrape and
    # the close, plus the step that finds the client gone.
    assert settled - at_close < 10, f"{settled - at_close} tokens after the client left"
    print(f"slot free {took * 1000:.0f} ms after the close, {settled - at_close:.0f} tokens on")


def test_a_client_gone_mid_request_or_while_queued_frees_its_place(tight):
    with httpx.Client(base_url=tight.url, headers=tight.headers, timeout=60) as http:
        body = completion("kubectl", LONG, stream=True)
        with http.stream("POST", "/openai/v1/completions", json=body) as running:
            lines = running.iter_lines()
            next(lines)
            queued = open_request(tight, completion("helm", LONG))
            wait_for(tight, "tuneops_serve_queue_depth", 1, within=5)
            queued.close()  # gone while waiting for a slot: its place is given back
            wait_for(tight, "tuneops_serve_queue_depth", 0, within=1)
            assert gauges(tight)["tuneops_serve_running_sequences"] == 1
    wait_for(tight, "tuneops_serve_running_sequences", 0, within=2)
    decoding = open_request(tight, completion("kubectl", LONG))  # not streamed
    wait_for(tight, "tuneops_serve_running_sequences", 1, within=5)
    decoding.close()
    wait_for(tight, "tuneops_serve_running_sequences", 0, within=2)
    assert gauges(tight)["tuneops_serve_queue_depth"] == 0


def test_oversized_bodies_get_their_413_not_a_reset(server):
    """The server reads and drops what a refused client is still sending before it closes, so
    the client sees the 413 rather than a reset connection, every time."""
    body = b"x" * (2 * 1024 * 1024)
    statuses = []
    for _ in range(20):
        reply = httpx.post(
            f"{server.openai_url}/completions",
            content=body,
            headers={**server.headers, "content-type": "application/json"},
            timeout=30,
        )
        statuses.append(reply.status_code)
    assert statuses == [413] * 20


def test_a_forwarded_for_header_does_not_make_another_client(tight):
    """X-Forwarded-For is not believed: three requests in flight from 127.0.0.1 fill its share
    whatever addresses the headers claim, and the fourth is refused."""
    wait_settled(tight)  # the earlier tests' departed clients no longer hold places
    threads = []
    answers = []

    def hold(n: int) -> None:
        headers = {**tight.headers, "x-forwarded-for": f"10.0.0.{n}"}
        body = completion("kubectl", LONG)
        answers.append(
            httpx.post(f"{tight.openai_url}/completions", json=body, headers=headers, timeout=120)
        )

    for n in range(3):
        threads.append(threading.Thread(target=hold, args=(n,)))
        threads[-1].start()
    wait_for(tight, "tuneops_serve_running_sequences", 1, within=10)
    wait_for(tight, "tuneops_serve_queue_depth", 2, within=10)
    headers = {**tight.headers, "x-forwarded-for": "10.0.0.99"}
    over = httpx.post(
        f"{tight.openai_url}/completions", json=completion("kubectl", 4), headers=headers
    )
    assert over.status_code == 429
    assert "requests in flight from this client" in over.json()["error"]["message"]
    for thread in threads:
        thread.join(120)
    assert [a.status_code for a in answers] == [200, 200, 200]
