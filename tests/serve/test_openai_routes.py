"""The OpenAI router in-process, on a bare FastAPI app: the shapes the process tests do not reach
(echo, a list of prompts, usage at the end of a stream, streaming refused for several prompts)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from workloads.models.load import load_model
from workloads.serve.config import ServeConfig
from workloads.serve.engine import Engine
from workloads.serve.openai.router import build_router
from workloads.serve.server import api_error_response, invalid_request_response
from workloads.serve.state import ApiError, ServingState

MODEL = "cloudops-assistant"


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    engine = Engine(loaded.model, loaded.tokenizer, device=loaded.device)
    state = ServingState(ServeConfig(), engine, loaded.tokenizer)
    app = FastAPI()
    app.include_router(build_router(state), prefix="/openai/v1")
    app.add_exception_handler(ApiError, api_error_response)
    app.add_exception_handler(RequestValidationError, invalid_request_response)
    engine.start()
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        engine.stop()


def events(reply) -> list:
    assert reply.headers["content-type"].startswith("text/event-stream")
    lines = [line.removeprefix("data: ") for line in reply.text.split("\n\n") if line]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_models_lists_the_served_model(client):
    body = client.get("/openai/v1/models").json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == [MODEL]


def test_completion_of_a_prompt_list_with_echo(client):
    body = {"model": MODEL, "prompt": ["kubectl get", "helm"], "max_tokens": 5, "echo": True}
    reply = client.post("/openai/v1/completions", json={**body, "temperature": 0})
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert result["object"] == "text_completion" and result["id"].startswith("cmpl-")
    first, second = result["choices"]
    assert (first["index"], second["index"]) == (0, 1)
    assert first["text"].startswith("kubectl get") and second["text"].startswith("helm")
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_completion_stream_echoes_then_ends_with_usage(client):
    body = {"model": MODEL, "prompt": "helm", "max_tokens": 5, "temperature": 0, "echo": True}
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    chunks = events(client.post("/openai/v1/completions", json=body))
    assert chunks[0]["choices"][0]["text"] == "helm"
    assert chunks[-2]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 5


def test_chat_stream_starts_with_the_role_and_ends_with_usage(client):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    body |= {"temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    chunks = events(client.post("/openai/v1/chat/completions", json=body))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 4


def test_streaming_several_prompts_is_refused(client):
    body = {"model": MODEL, "prompt": ["a", "b"], "max_tokens": 4, "stream": True}
    reply = client.post("/openai/v1/completions", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "message": "streaming takes a single prompt",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": None,
    }


def test_invalid_body_is_400_in_openai_shape(client):
    reply = client.post("/openai/v1/completions", json={"model": MODEL, "prompt": []})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert "prompt.list[str]: List should have at least 1 item" in message


@pytest.mark.parametrize("prompt", ["", "\u001d"])
def test_a_prompt_with_no_tokens_starts_from_the_start_of_text(client, prompt):
    """The document allows an empty prompt, so the server takes one (and one the tokenizer
    keeps nothing of): generation starts from the start-of-text token."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0}
    reply = client.post("/openai/v1/completions", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 1.5), ("n", "1"), ("max_tokens", "5"), ("stream", 0), ("echo", 1), ("stop", "")],
)
def test_values_of_the_wrong_json_type_are_refused(client, field, value):
    """The body takes the JSON types the document gives: no coercion of 0 to false or of a
    string to a number."""
    body = {"model": MODEL, "prompt": "kubectl", "max_tokens": 2, field: value}
    reply = client.post("/openai/v1/completions", json=body)
    assert reply.status_code == 400, (field, value, reply.text)
    assert field in reply.json()["error"]["message"]


def test_a_whole_float_is_an_integer(client):
    body = {"model": MODEL, "prompt": "kubectl", "max_tokens": 2.0, "n": 1.0}
    assert client.post("/openai/v1/completions", json=body).status_code == 200


def test_either_token_limit_over_the_server_limit_is_refused(client):
    over = ServeConfig().limits.max_new_tokens + 1
    base = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    for field in ("max_tokens", "max_completion_tokens"):
        body = {**base, "max_tokens": 2, "max_completion_tokens": 2, field: over}
        reply = client.post("/openai/v1/chat/completions", json=body)
        assert reply.status_code == 400 and reply.json()["error"]["param"] == field


def test_a_tiny_temperature_is_greedy_and_fails_nothing(client):
    """Dividing logits by 1e-300 overflows; such a request is decoded greedily, and the
    sequences sharing its batch are not failed."""
    body = {"model": MODEL, "prompt": "helm", "max_tokens": 4}
    greedy = client.post("/openai/v1/completions", json={**body, "temperature": 0}).json()
    tiny = client.post("/openai/v1/completions", json={**body, "temperature": 1e-300})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["choices"][0]["text"] == greedy["choices"][0]["text"]
