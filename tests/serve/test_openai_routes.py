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
    assert "prompt must not be an empty list" in reply.json()["error"]["message"]
