"""The server's OpenAPI document (``/openapi.json``), completed to say what the server answers.

FastAPI builds the document from the routes: KServe's v1/v2 routes and the project's OpenAI
router. It knows nothing of what the middleware and the error handlers answer, so ``install``
replaces ``app.openapi`` with one that takes FastAPI's document once and completes it in one
place, from the configuration the server runs with:

- the bearer token as a security scheme, on every operation but the probes (``is_probe``),
  each of those with its 401 and its 429 (the per-client limit);
- 400, 404, 413, 422, 503 and 504 where the server answers them, in the error shape of the
  route's protocol (``middleware.error_body``);
- the ``text/event-stream`` form of the streamed OpenAI answers, and Prometheus' text formats
  on ``/metrics``;
- the limits as schema bounds: the one model name, ``max_tokens`` up to
  ``limits.max_new_tokens``, at most ``limits.max_prompts`` prompts;
- the routes with nothing behind them left out (``:explain``, and the model-repository routes
  while they are off); the versioned readiness route stays, documented as the 404 it is.

``allowed_methods`` reads the same document to answer a 405 with the methods of the resource
asked for.
"""

from __future__ import annotations

import re
from typing import Any

from workloads.serve.config import ServeConfig
from workloads.serve.middleware import REPOSITORY_PREFIX, is_probe

OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
KSERVE_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
# One server-sent event of a streamed answer (Open API 3.1: the schema of a text/event-stream
# describes each event).
SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "type": "string",
            "description": "a chunk as JSON (chat.completion.chunk or text_completion), an "
            '{"error": ...} object if generation fails, and [DONE] last',
        },
        "event": {"type": "string"},
    },
}
# Routes that generate text, and those of them that stream server-sent events on request.
GENERATION = {
    "/openai/v1/chat/completions",
    "/openai/v1/completions",
    "/v1/models/{model_name}:predict",
    "/v2/models/{model_name}/infer",
}
STREAMING = {"/openai/v1/chat/completions", "/openai/v1/completions"}
READINESS = {"/v2/health/ready", "/v1/models/{model_name}", "/v2/models/{model_name}/ready"}
VERSIONED_READY = "/v2/models/{model_name}/versions/{model_version}/ready"
NOT_SERVED = ("/v1/models/{model_name}:explain",)
METRICS_CONTENT = ("text/plain", "application/openmetrics-text")

WHY = {
    "400": "the request cannot be served as asked (the message names the field)",
    "401": "missing or wrong bearer token",
    "404": "no such model (or version) on this server",
    "413": "request body over limits.max_body_bytes",
    "422": "the body does not fit the request schema",
    "429": "queue full or too many requests in flight from this client; retry after Retry-After",
    "503": "not ready, or shutting down",
    "504": "not finished within limits.request_timeout_s",
}


def install(app: Any, config: ServeConfig, *, authenticated: bool) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, at the first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), config, authenticated=authenticated)
        return app.openapi_schema

    app.openapi = openapi


def complete(doc: dict[str, Any], config: ServeConfig, *, authenticated: bool) -> dict[str, Any]:
    """``doc`` as FastAPI generated it, completed in place (see the module's docstring)."""
    paths = doc["paths"]
    for path in [*NOT_SERVED, *(p for p in paths if p.startswith(REPOSITORY_PREFIX))]:
        if path in NOT_SERVED or not config.server.repository_routes:
            paths.pop(path, None)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update({"OpenAIError": OPENAI_ERROR, "KServeError": KSERVE_ERROR})
    if authenticated:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in paths.items():
        for method, operation in operations.items():
            protected = authenticated and not is_probe(method.upper(), path, config.auth.open_paths)
            _complete_operation(path, method, operation, protected)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _bound_requests(doc, config)
    _kserve_requests(doc, config)
    return doc


def _complete_operation(path: str, method: str, operation: dict, protected: bool) -> None:
    responses = operation.setdefault("responses", {})
    errors = _ErrorAnswers(path, responses)
    responses.pop("422", None)  # FastAPI's own shape; re-added below where it can happen
    if protected:
        operation["security"] = [{"bearer": []}]
        errors.add("401", headers={"WWW-Authenticate": "Bearer"})
        errors.add("429", headers={"Retry-After": "seconds to wait"})
    else:
        operation["security"] = []
    if method == "post":
        errors.add("400")
        errors.add("413")
        if "requestBody" in operation and not path.startswith("/openai/"):
            errors.add("422")
    if "{model_name}" in path or path in GENERATION:
        errors.add("404")
    if path in GENERATION:
        errors.add("429", headers={"Retry-After": "seconds to wait"})
        errors.add("503")
        errors.add("504")
    if path in READINESS:
        errors.add("503")
    if path in STREAMING:
        responses["200"]["content"]["text/event-stream"] = {"schema": SSE_EVENT}
    if path == VERSIONED_READY:
        responses.pop("200", None)
        operation["description"] = "The served model has no versions: always 404."
    if path == "/metrics":
        text = {"schema": {"type": "string"}}
        responses["200"]["content"] = {kind: text for kind in METRICS_CONTENT}


class _ErrorAnswers:
    """Adds error responses to one operation, in its protocol's shape."""

    def __init__(self, path: str, responses: dict) -> None:
        self.responses = responses
        shape = "OpenAIError" if path.startswith("/openai/") else "KServeError"
        self.schema = {"$ref": f"#/components/schemas/{shape}"}

    def add(self, status: str, headers: dict[str, str] | None = None) -> None:
        answer: dict[str, Any] = {
            "description": WHY[status],
            "content": {"application/json": {"schema": self.schema}},
        }
        if headers:
            answer["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        self.responses[str(status)] = answer


def _kserve_requests(doc: dict[str, Any], config: ServeConfig) -> None:
    """The v1 and v2 request bodies as this server reads them: text prompts (v1 instances, a v2
    ``BYTES`` tensor) and the generation parameters."""
    schemas, paths, limits = doc["components"]["schemas"], doc["paths"], config.limits
    text = {"type": "string"}
    schemas["GenerationParameters"] = _parameters(limits.max_new_tokens, scalars=False)
    prompt = {"type": "object", "required": ["prompt"], "properties": {"prompt": text}}
    schemas["V1PredictRequest"] = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "items": {"anyOf": [text, prompt]},
                "minItems": 1,
                "maxItems": limits.max_prompts,
            },
            "parameters": {
                "anyOf": [{"$ref": "#/components/schemas/GenerationParameters"}, {"type": "null"}]
            },
        },
    }
    _json_body(paths, "/v1/models/{model_name}:predict", "V1PredictRequest")
    if "RequestInput" in schemas:
        tensor = schemas["RequestInput"]["properties"]
        tensor["datatype"] = {"type": "string", "enum": ["BYTES"], "description": "text prompts"}
        tensor["shape"] = {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "description": "the product of the shape is the number of prompts in data",
        }
        tensor["data"] = {
            "type": "array",
            "items": text,
            "minItems": 1,
            "maxItems": limits.max_prompts,
        }
    if "InferenceRequest" in schemas:
        request = schemas["InferenceRequest"]
        request["properties"]["inputs"]["minItems"] = 1
        v2 = _parameters(limits.max_new_tokens, scalars=True)
        request["properties"]["parameters"] = {"anyOf": [v2, {"type": "null"}]}
        request.pop("example", None)
    # JSON only: KServe's binary tensor extension needs a header of its own.
    _json_body(paths, "/v2/models/{model_name}/infer", "InferenceRequest")


def _json_body(paths: dict[str, Any], path: str, schema: str) -> None:
    operation = paths.get(path, {}).get("post")
    if operation is not None:
        body = {"$ref": f"#/components/schemas/{schema}"}
        content = {"application/json": {"schema": body}}
        operation["requestBody"] = {"required": True, "content": content}


def _parameters(max_new_tokens: int, *, scalars: bool) -> dict[str, Any]:
    """The generation options of a v1 request, or of a v2 one (``scalars``: KServe's v2 request
    takes only numbers, booleans and strings as parameter values, never null or a list)."""
    stop = {"type": "string", "minLength": 1}
    unset = [] if scalars else ["null"]  # v1: null means the default
    schema: dict[str, Any] = {
        "type": "object",
        "description": "generation options; others are ignored",
        "properties": {
            "max_tokens": {"type": ["integer", *unset], "minimum": 1, "maximum": max_new_tokens},
            "temperature": {"type": ["number", *unset], "minimum": 0, "maximum": 2},
            "stop": stop if scalars else {"anyOf": [stop, {"type": "array", "items": stop}]},
            "chat": {"type": "boolean", "description": "apply the chat template (default)"},
        },
    }
    if scalars:
        schema["additionalProperties"] = {"type": ["number", "boolean", "string"]}
    else:
        schema["properties"]["stop"]["anyOf"].append({"type": "null"})
    return schema


def _bound_requests(doc: dict[str, Any], config: ServeConfig) -> None:
    """The limits the server enforces, as bounds of the request schemas."""
    schemas, limits = doc["components"]["schemas"], config.limits
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        props = schemas.get(name, {}).get("properties", {})
        if "model" in props:
            props["model"]["enum"] = [config.model_name]
        for field in ("max_tokens", "max_completion_tokens"):
            if field in props:
                _branch(props[field], "integer")["maximum"] = limits.max_new_tokens
    completion = schemas.get("CompletionRequest")
    if completion is not None:
        _branch(completion["properties"]["prompt"], "array")["maxItems"] = limits.max_prompts
        # A stream carries one prompt's answer.
        completion["if"] = {"required": ["stream"], "properties": {"stream": {"const": True}}}
        one = {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 1}]}
        completion["then"] = {"properties": {"prompt": one}}
    for operations in doc["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "model_name" and parameter["in"] == "path":
                    parameter["schema"]["enum"] = [config.model_name]


def _branch(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """The part of ``schema`` (itself, or one of its ``anyOf``) that is of JSON type ``kind``."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == kind:
            return option
    raise KeyError(f"no {kind} in {schema}")


def allowed_methods(doc: dict[str, Any], path: str) -> str | None:
    """The ``Allow`` header of ``path``: the methods of the documented path that matches it
    most closely (the one with the most literal text, so ``/v1/models/m:predict`` is the
    predict route, not model readiness with a name of ``m:predict``); None when none does."""
    best: tuple[int, set[str]] | None = None
    for template, operations in doc["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            literal = len(re.sub(r"\{[^/]+?\}", "", template))
            if best is None or literal > best[0]:
                best = (literal, {m.upper() for m in operations})
    return None if best is None else ", ".join(sorted(best[1]))
