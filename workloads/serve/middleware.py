"""ASGI middleware in front of every route (plain ASGI, so streaming passes through untouched):
bearer-token auth, the KServe routes this server does not serve, body size, per-client limits
and per-request metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs

from workloads.serve import metrics

# Model readiness (v2 and v1) stays open with the other health paths. A model name never holds
# ":" or "/", so `/v1/models/<name>:predict` (or `:explain`) is not a readiness path.
_READY_PATHS = re.compile(r"^/v2/models/[^/:]+/ready$|^/v1/models/[^/:]+$")
# Probes only read: an open path is open to these methods and no others.
_OPEN_METHODS = frozenset({"GET", "HEAD"})
# KServe's model-repository routes (load/unload): the admin token only.
REPOSITORY_PREFIX = "/v2/repository/"


def is_probe(method: str, path: str, open_paths: set[str] | list[str]) -> bool:
    """A GET or HEAD of a configured open path or of model readiness: what the kubelet asks
    without a token, and what no per-client limit counts."""
    if method not in _OPEN_METHODS:
        return False
    return path in open_paths or bool(_READY_PATHS.match(path))


class BearerAuth:
    """401 for any request without ``Authorization: Bearer <token>``, except a probe (a GET or
    HEAD of the configured health paths and of model readiness)."""

    def __init__(
        self, app: Any, token: str | None, open_paths: list[str], admin_token: str | None = None
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.admin_token = admin_token.encode() if admin_token else None
        self.open_paths = set(open_paths)

    def _accepts(self, path: str, given: bytes | None) -> bool:
        """The admin token for the repository routes when there is one, else the token (none
        set: open)."""
        if self.admin_token is not None and path.startswith(REPOSITORY_PREFIX):
            return given is not None and hmac.compare_digest(given, self.admin_token)
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given, self.token)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_probe(scope["method"], scope["path"], self.open_paths):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        bearer = given.strip() if scheme.lower() == b"bearer" else None
        if self._accepts(scope["path"], bearer):
            await self.app(scope, receive, send)
            return
        message = "missing or wrong bearer token: send Authorization: Bearer <token>"
        body = error_body(scope["path"], message, "authentication_error", code="invalid_api_key")
        await send_json(send, 401, body, [(b"www-authenticate", b"Bearer")])


class RepositoryRoutesOff:
    """404 for KServe's model-repository routes (load/unload), which let a client unload the
    model: they are off unless ``server.repository_routes`` turns them on for an admin token.
    Answered before routing, so the model is never touched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(REPOSITORY_PREFIX):
            await self.app(scope, receive, send)
            return
        message = "not found: the model-repository routes are off"
        await send_json(send, 404, error_body(scope["path"], message, "not_found_error"))


# The v2 routes that take a model version, in the path or as ``?model_version=``, and the methods
# KServe serves them with; and the v1 explain route.
_VERSIONED = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?$"
)
_VERSIONED_METHODS = {"": {"GET", "HEAD"}, "/ready": {"GET", "HEAD"}, "/infer": {"POST"}}
_EXPLAIN = re.compile(r"^/v1/models/(?P<name>[^/]+):explain$")


class UnservedModelRoutes:
    """404, before routing, for the KServe routes this server has nothing behind: the served
    model has no versions (``/v2/models/<name>/versions/<v>/...`` or ``?model_version=<v>``,
    which KServe answers 501) and no explainer (``/v1/models/<name>:explain``, 501 too). The
    answer names the model and the version, in KServe's ``{"error": ...}`` shape."""

    def __init__(self, app: Any, model_name: str) -> None:
        self.app = app
        self.model_name = model_name

    def _refusal(self, method: str, path: str, query: bytes) -> str | None:
        explain = _EXPLAIN.match(path)
        if explain and method == "POST":
            return f"model {explain['name']} has no explainer on this server"
        match = _VERSIONED.match(path)
        if match is None or method not in _VERSIONED_METHODS[match["tail"] or ""]:
            return None
        asked = parse_qs(query.decode("latin-1")).get("model_version")
        version = match["version"] or (asked[0] if asked else None)
        if version is None:
            return None
        return (
            f"model {match['name']} has no version {version}: this server serves "
            f"{self.model_name} without versions (ask /v2/models/{self.model_name}/ready)"
        )

    async def __call__(self, scope, receive, send) -> None:
        refusal = None
        if scope["type"] == "http":
            refusal = self._refusal(scope["method"], scope["path"], scope["query_string"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await send_json(send, 404, error_body(scope["path"], refusal, "not_found_error"))


# A client still sending a body the server refuses would see its connection reset instead of
# the 413 (the server closes with unread bytes in flight): up to this much is read and dropped
# first, for at most DRAIN_S.
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_S = 1.0


async def drain(receive) -> None:
    """Read and drop the rest of a refused request body, within DRAIN_BYTES and DRAIN_S."""
    seen = 0
    try:
        async with asyncio.timeout(DRAIN_S):
            while seen < DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    return
                seen += len(message.get("body", b""))
    except TimeoutError:
        return


class BodyLimit:
    """413 for a request body over ``max_bytes``, answered before anything parses it: at once
    when ``Content-Length`` says so, else as soon as the bytes read pass the limit; 408 for a
    body not read whole within ``read_timeout_s`` (a client trickling it in holds a connection
    and a per-client slot). The body, read whole while it fits, is handed on unchanged; later
    reads (a client that goes away) come from the connection as before."""

    def __init__(self, app: Any, max_bytes: int, read_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await drain(receive)
            await self._too_large(scope, send)
            return
        chunks, size, message = [], 0, {"type": "http.request", "more_body": True}
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while message["type"] == "http.request" and message.get("more_body"):
                    message = await receive()
                    size += len(message.get("body", b""))
                    if size > self.max_bytes:
                        if message.get("more_body"):
                            await drain(receive)
                        await self._too_large(scope, send)
                        return
                    chunks.append(message.get("body", b""))
        except TimeoutError:
            message = f"request body not sent within {self.read_timeout_s:g} s"
            body = error_body(scope["path"], message + " (limits.read_timeout_s)", "timeout")
            await send_json(send, 408, body, [(b"connection", b"close")])
            return
        first = (
            {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            if message["type"] == "http.request"
            else message
        )
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, send) -> None:
        message = f"request body over {self.max_bytes} bytes (limits.max_body_bytes)"
        body = error_body(scope["path"], message, "invalid_request_error")
        await send_json(send, 413, body, [(b"connection", b"close")])


class PerClientLimit:
    """At most ``limit`` requests in flight per client address; past it, 429 with
    ``Retry-After``, so one client cannot take every batch slot from the others. Streams
    count until they end. Probes (``is_probe``) are not counted."""

    def __init__(self, app: Any, limit: int, exempt: list[str]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = set(exempt)
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_probe(scope["method"], scope["path"], self.exempt):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.in_flight.get(client, 0) >= self.limit:
            message = f"more than {self.limit} requests in flight from this client; retry later"
            body = error_body(scope["path"], message, "rate_limit_error")
            await send_json(send, 429, body, [(b"retry-after", b"1")])
            return
        self.in_flight[client] = self.in_flight.get(client, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            left = self.in_flight[client] - 1
            if left:
                self.in_flight[client] = left
            else:
                del self.in_flight[client]


def error_body(
    path: str, message: str, kind: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An error answer in the shape of the protocol the path belongs to: OpenAI's
    ``{"error": {"message", "type", "param", "code"}}`` under ``/openai/``, KServe's
    ``{"error": "<message>"}`` everywhere else."""
    if path.startswith("/openai/"):
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return {"error": message}


async def send_json(send, status: int, payload: dict, headers: list | None = None) -> None:
    """Answer with a JSON body straight from the middleware."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _route_label(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return "unmatched"
    if scope["path"].startswith("/openai/v1/") and not path.startswith("/openai/"):
        path = "/openai/v1" + path  # routes of the included router carry their own path
    return path


class RequestMetrics:
    """Counts requests by route template and status; times them to the last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, watch)
        finally:
            metrics.IN_FLIGHT.dec()
            route = _route_label(scope)
            metrics.REQUESTS.labels(route=route, status=str(status["code"])).inc()
            metrics.LATENCY.labels(route=route).observe(time.perf_counter() - started)
