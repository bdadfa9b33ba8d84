"""ASGI middleware: bearer-token auth and per-request metrics (plain ASGI, so streaming passes
through untouched)."""

from __future__ import annotations

import hmac
import json
import re
import time
from typing import Any

from workloads.serve import metrics

# Model readiness (v2 and v1) stays open with the other health paths. A model name never holds
# ":" or "/", so `/v1/models/<name>:predict` (or `:explain`) is not a readiness path.
_READY_PATHS = re.compile(r"^/v2/models/[^/:]+(/versions/[^/:]+)?/ready$|^/v1/models/[^/:]+$")
# Probes and scrapes only read: an open path is open to these methods and no others.
_OPEN_METHODS = frozenset({"GET", "HEAD"})
# KServe's model-repository routes (load/unload): the admin token only.
REPOSITORY_PREFIX = "/v2/repository/"


class BearerAuth:
    """401 for any request without ``Authorization: Bearer <token>``, except a GET or HEAD of an
    open path (the configured health and metrics paths, and model readiness)."""

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

    def _is_open(self, method: str, path: str) -> bool:
        if method not in _OPEN_METHODS:
            return False
        return path in self.open_paths or bool(_READY_PATHS.match(path))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self._is_open(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        bearer = given.strip() if scheme.lower() == b"bearer" else None
        if self._accepts(scope["path"], bearer):
            await self.app(scope, receive, send)
            return
        message = "missing or wrong bearer token: send Authorization: Bearer <token>"
        body = {
            "error": {
                "message": message,
                "type": "authentication_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
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
        await send_json(send, 404, {"error": "not found: the model-repository routes are off"})


class BodyLimit:
    """413 for a request body over ``max_bytes``, answered before anything parses it: at once
    when ``Content-Length`` says so, else as soon as the bytes read pass the limit. The body,
    read whole while it fits, is handed on unchanged; later reads (a client that goes away)
    come from the connection as before."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            await self._too_large(scope, send)
            return
        chunks, size, message = [], 0, {"type": "http.request", "more_body": True}
        while message["type"] == "http.request" and message.get("more_body"):
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, send)
                return
            chunks.append(message.get("body", b""))
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
        if scope["path"].startswith("/openai/"):
            body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
        else:
            body = {"error": message}
        await send_json(send, 413, body, [(b"connection", b"close")])


class PerClientLimit:
    """At most ``limit`` requests in flight per client address; past it, 429 with
    ``Retry-After``, so one client cannot take every batch slot from the others. Streams
    count until they end. Health and readiness probes are not counted."""

    def __init__(self, app: Any, limit: int, exempt: list[str]) -> None:
        self.app = app
        self.limit = limit
        self.exempt = set(exempt)
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        if self.in_flight.get(client, 0) >= self.limit:
            message = f"more than {self.limit} requests in flight from this client; retry later"
            body = {"error": {"message": message, "type": "rate_limit_error", "param": None}}
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
