"""The API document is a contract: schemathesis generates requests from the server's own
``/openapi.json`` (valid ones and ones that break the schema) and sends them to a real server
process on loopback, with the token. Every answer must be no 5xx, a status the document
declares for that operation, a content type it declares, and a body that fits its schema.

The server here allows 8 new tokens (``limits.max_new_tokens``), and the document says so, so
every generated request stays short. Bounded: a fixed number of examples per operation, each
with a deadline, derandomized so a run is repeatable.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from workloads.serve.process import ServerProcess

MODEL_NAME = "cloudops-assistant"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def contract_server(tiny_model_dir):
    overrides = ["dtype=float32", "limits.max_new_tokens=8", "limits.max_prompt_tokens=256"]
    with ServerProcess(str(tiny_model_dir), name=MODEL_NAME, overrides=overrides) as proc:
        yield proc


@pytest.fixture(scope="module")
def api_schema(contract_server):
    return schemathesis.openapi.from_url(
        f"{contract_server.url}/openapi.json", headers=contract_server.headers, timeout=30
    )


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.e2e
@schema.parametrize()
@settings(
    max_examples=12,
    deadline=5000,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, contract_server):
    case.call_and_validate(headers=contract_server.headers, checks=CHECKS, timeout=30)


def test_the_document_states_what_the_server_enforces(contract_server):
    """The facts the generated cases rely on, read straight from the document."""
    with httpx.Client(base_url=contract_server.url, headers=contract_server.headers) as http:
        doc = http.get("/openapi.json").json()
    schemas, paths = doc["components"]["schemas"], doc["paths"]
    completion = schemas["CompletionRequest"]["properties"]
    # An empty prompt is accepted (generation starts from the start-of-text token); an empty
    # list of prompts is not, and neither is a list over limits.max_prompts.
    single, many = completion["prompt"]["anyOf"]
    assert "minLength" not in single
    assert (many["minItems"], many["maxItems"]) == (1, 32)
    assert completion["max_tokens"]["anyOf"][0]["maximum"] == 8
    assert completion["model"]["enum"] == [MODEL_NAME]
    chat = paths["/openai/v1/chat/completions"]["post"]
    assert set(chat["responses"]) >= {"200", "400", "401", "404", "413", "429", "503"}
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert chat["security"] == [{"bearer": []}]
    assert paths["/v2/health/live"]["get"]["security"] == []
    versioned = paths["/v2/models/{model_name}/versions/{model_version}/ready"]["get"]
    assert set(versioned["responses"]) == {"401", "404", "429"}
    # Routes with nothing behind them are not in the document.
    assert not [p for p in paths if p.startswith("/v2/repository/") or p.endswith(":explain")]


def test_versioned_readiness_is_404_naming_the_model_and_version(contract_server):
    with httpx.Client(base_url=contract_server.url, headers=contract_server.headers) as http:
        for url in (
            f"/v2/models/{MODEL_NAME}/versions/3/ready",
            f"/v2/models/{MODEL_NAME}/ready?model_version=3",
        ):
            reply = http.get(url)
            assert reply.status_code == 404, url
            assert reply.json() == {
                "error": f"model {MODEL_NAME} has no version 3: this server serves "
                f"{MODEL_NAME} without versions (ask /v2/models/{MODEL_NAME}/ready)"
            }
        # As the other v2 404s: KServe's {"error": "<message>"}.
        other = http.get("/v2/models/other/ready")
        assert other.status_code == 404 and set(other.json()) == {"error"}
        assert http.get(f"/v2/models/{MODEL_NAME}/ready").json()["ready"] is True


def test_a_405_lists_the_methods_of_the_resource_asked_for(contract_server):
    with httpx.Client(base_url=contract_server.url, headers=contract_server.headers) as http:
        predict = http.request("OPTIONS", f"/v1/models/{MODEL_NAME}:predict")
        assert predict.status_code == 405 and predict.headers["allow"] == "POST"
        ready = http.delete(f"/v1/models/{MODEL_NAME}")
        assert ready.status_code == 405 and ready.headers["allow"] == "GET"
        chat = http.get("/openai/v1/chat/completions")
        assert chat.status_code == 405 and chat.headers["allow"] == "POST"
        assert chat.json()["error"]["type"] == "invalid_request_error"
