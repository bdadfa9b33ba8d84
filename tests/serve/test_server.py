"""The server through real clients: the openai package for the OpenAI routes, httpx for the rest."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import openai
import pytest

MODEL_NAME = "cloudops-assistant"  # the name tests/serve/conftest.py serves under


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.openai_url, api_key=server.token, max_retries=0)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c:
        yield c


def ask(client, content, **kw):
    return client.chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": content}],
        temperature=0,
        **kw,
    )


def test_chat_answer_decodes_to_text(client):
    reply = ask(client, "What is a Kubernetes pod?", max_tokens=12)
    choice = reply.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason in {"stop", "length"}
    assert reply.model == MODEL_NAME
    assert 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_stream_assembles_to_the_same_answer(client):
    question = "How do I roll back a Helm release?"
    whole = ask(client, question, max_tokens=24).choices[0].message.content
    stream = ask(client, question, max_tokens=24, stream=True)
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([c for c in chunks if c]) > 1, "the answer arrived in one piece, not streamed"
    assert "".join(chunks) == whole


def test_completion_and_its_stream_agree(client):
    kw = {"model": MODEL_NAME, "prompt": "terraform plan shows", "max_tokens": 16, "temperature": 0}
    whole = client.completions.create(**kw)
    assert whole.choices[0].text and whole.usage.completion_tokens > 0
    streamed = "".join(c.choices[0].text for c in client.completions.create(**kw, stream=True))
    assert streamed == whole.choices[0].text


def test_stop_string_ends_the_answer(client):
    full = ask(client, "List three kubectl verbs.", max_tokens=30).choices[0].message.content
    assert len(full) > 6
    stop = full[3:6]
    cut = ask(client, "List three kubectl verbs.", max_tokens=30, stop=[stop]).choices[0]
    assert cut.message.content == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_models_route_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == [MODEL_NAME]


BAD_BODIES = {
    "malformed json": "{not json",
    "unknown model": {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]},
    "prompt too long": {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "kubectl " * 400}],
    },
    "negative max_tokens": {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": -5,
    },
    "max_tokens over the limit": {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100000,
    },
    "messages not a list": {"model": MODEL_NAME, "messages": "hi"},
    "temperature not a number": {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": "hot",
    },
    "unknown role": {"model": MODEL_NAME, "messages": [{"role": "wizard", "content": "hi"}]},
    "no messages": {"model": MODEL_NAME, "messages": []},
    "n above one": {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "n": 5},
}

# Fields that would change the answer and that the server does not implement: refused, named.
UNSUPPORTED = {
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "response_format": {"type": "json_object"},
    "logprobs": True,
    "seed": 7,
}


@pytest.mark.parametrize("field", sorted(UNSUPPORTED))
def test_fields_that_change_the_answer_are_refused_by_name(http, field):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]}
    reply = http.post("/openai/v1/chat/completions", json={**body, field: UNSUPPORTED[field]})
    assert reply.status_code == 400, reply.text
    assert f"{field} is not supported" in reply.json()["error"]["message"]
    # The inert values clients fill in by default are accepted.
    inert = {"tools": [], "response_format": {"type": "text"}, "logprobs": False, "seed": None}
    ok = http.post(
        "/openai/v1/chat/completions", json={**body, field: inert[field], "max_tokens": 2}
    )
    assert ok.status_code == 200, ok.text


def test_too_many_prompts_are_refused_before_anything_is_queued(http):
    body = {"model": MODEL_NAME, "prompt": ["kubectl get"] * 33, "max_tokens": 2}
    reply = http.post("/openai/v1/completions", json=body)
    assert reply.status_code == 400
    assert "at most 32" in reply.json()["error"]["message"]
    queued = http.get("/metrics").text
    depth = [line for line in queued.splitlines() if line.startswith("tuneops_serve_queue_depth")]
    assert depth and float(depth[0].split()[-1]) == 0.0


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_chat_request_is_4xx_with_a_message(http, case):
    body = BAD_BODIES[case]
    content = body if isinstance(body, str) else json.dumps(body)
    reply = http.post(
        "/openai/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["error"]["message"]
    # The server is still up and answering after each bad request.
    assert http.get("/v2/health/ready").json() == {"ready": True}


def test_openai_client_sees_bad_requests_as_client_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        ask(client, "hi", max_tokens=0)


def test_auth_required_but_health_stays_open(server):
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]}
        assert anon.post("/openai/v1/chat/completions", json=body).status_code == 401
        assert anon.get("/openai/v1/models").status_code == 401
        wrong = {"Authorization": "Bearer wrong"}
        assert anon.get("/openai/v1/models", headers=wrong).status_code == 401
        infer = anon.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": []})
        assert infer.status_code == 401
        assert anon.get("/v2/health/live").status_code == 200
        assert anon.get("/v2/health/ready").status_code == 200
        assert anon.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 200
        assert anon.get("/metrics").status_code == 401  # behind the same token
    bad = openai.OpenAI(base_url=server.openai_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_v2_infer_returns_text_for_each_prompt(http):
    request = {
        "id": "req-1",
        "inputs": [
            {
                "name": "text",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["What is Argo CD?", "What is a node pool?"],
            }
        ],
        "parameters": {"max_tokens": 8},
    }
    reply = http.post(f"/v2/models/{MODEL_NAME}/infer", json=request)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model_name"] == MODEL_NAME and body["id"] == "req-1"
    (output,) = body["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [2]
    assert all(isinstance(t, str) and t for t in output["data"])


@pytest.mark.parametrize(
    "request_body",
    [
        {"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]},
        {
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}],
            "parameters": {"max_tokens": "many"},
        },
        {"inputs": "text"},
    ],
)
def test_v2_bad_input_is_4xx(http, request_body):
    reply = http.post(f"/v2/models/{MODEL_NAME}/infer", json=request_body)
    assert 400 <= reply.status_code < 500, reply.text


def test_v2_unknown_model_is_404(http):
    request = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    assert http.post("/v2/models/other/infer", json=request).status_code == 404


def test_concurrent_requests_share_forward_passes_and_metrics_show_it(server, client, http):
    def one(i):
        return ask(client, f"question number {i} about kubernetes", max_tokens=16)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, range(8)))
    assert all(r.choices[0].message.content for r in replies)

    text = http.get("/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    ok = 'tuneops_serve_requests_total{route="/openai/v1/chat/completions",status="200"}'
    assert samples[ok] >= 8
    assert samples["tuneops_serve_time_to_first_token_seconds_count"] >= 8
    assert samples["tuneops_serve_generated_tokens_total"] > 0
    assert "tuneops_serve_queue_depth" in samples
    assert samples['tuneops_serve_request_latency_seconds_count{route="/v2/health/ready"}'] >= 1
    # Batching: some decode steps ran more than one sequence at once.
    steps = samples["tuneops_serve_batch_size_count"]
    single = samples['tuneops_serve_batch_size_bucket{le="1.0"}']
    assert steps > single, "every forward pass decoded a single sequence"
    # KServe's own metrics are on the same endpoint.
    assert "request_predict_seconds" in text


def test_sampled_prompts_are_scrubbed(server, client, prompt_log):
    ask(client, "my key is AKIAIOSFODNN7EXAMPLE, why does terraform fail?", max_tokens=4)
    hit, server_log = [], ""
    for _ in range(100):  # the log is written by a background thread: wait for the line
        server_log = prompt_log.read_text(encoding="utf-8") if prompt_log.exists() else ""
        records = [json.loads(line) for line in server_log.splitlines()]
        hit = [r for r in records if "why does terraform fail" in r["prompt"]]
        if hit:
            break
        time.sleep(0.1)
    assert hit and "AKIAIOSFODNN7EXAMPLE" not in server_log
    assert hit[-1]["redactions"].get("aws_access_key") == 1


def test_running_server_packed_its_weights_and_says_its_dtype(server):
    """The shared test server runs on the defaults, so it must have packed at load; its load
    line names the dtype it runs in and why."""
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    (line,) = [line for line in log.splitlines() if "loaded cloudops-assistant from" in line]
    assert "Linear weights prepacked" in line
    assert "dtype float32: float32 as configured (" in line


def test_model_repository_routes_are_off_by_default(server, http):
    """Off by default: unloading the model is not a route at all, even with the token."""
    for action in ("load", "unload"):
        reply = http.post(f"/v2/repository/models/{MODEL_NAME}/{action}")
        assert reply.status_code == 404, action
    assert http.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 200
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "model-repository routes off" in log


def test_routing_errors_on_openai_paths_have_the_openai_shape(http):
    missing = http.get("/openai/v1/no-such-route")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong_method = http.get("/openai/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["message"]
    assert "POST" in wrong_method.headers["allow"]
