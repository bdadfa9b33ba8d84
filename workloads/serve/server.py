"""The KServe model server: one process, one port, every protocol.

``TextGenerationModel`` (``workloads.serve.model``) is a ``kserve.Model``: KServe's
``ModelServer`` gives it the v1 and v2 (Open Inference Protocol) routes, health and readiness,
and ``/metrics``. The project's own OpenAI-compatible router (``workloads.serve.openai``) is
mounted on the same FastAPI app (``kserve.model_server.app``) before ``start()``; KServe's
built-in OpenAI layer needs vLLM, which is not used here. This module imports kserve, so the
CLI imports it only when a server starts.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workloads.serve import openapi
from workloads.serve.config import LimitsSection, ServeConfig, read_admin_token, read_token
from workloads.serve.http_guard import GuardedHttpToolsProtocol
from workloads.serve.kserve_argv import hidden_argv
from workloads.serve.middleware import (
    BearerAuth,
    BodyLimit,
    PerClientLimit,
    RepositoryRoutesOff,
    RequestMetrics,
    UnservedModelRoutes,
    error_body,
)
from workloads.serve.model import TextGenerationModel
from workloads.serve.openai.router import build_router
from workloads.serve.state import ApiError

with hidden_argv():
    import kserve
    from kserve.model_server import app as kserve_app

log = logging.getLogger(__name__)


async def api_error_response(request: Request, exc: ApiError) -> JSONResponse:
    """An ``ApiError`` in the shape of the route's protocol, with its status (a 429 says when
    to retry)."""
    headers = {"Retry-After": "1"} if exc.status == 429 else None
    path = request.url.path
    body = error_body(path, exc.message, exc.type, param=exc.param, code=exc.code)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def invalid_request_response(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that fails validation: 400 in OpenAI's shape on /openai, else KServe's 422."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        problems.append(f"{loc}: {err.get('msg')}")
    message = "invalid request: " + "; ".join(problems)
    path = request.url.path
    status = 400 if path.startswith("/openai/") else 422
    return JSONResponse(error_body(path, message, "invalid_request_error"), status_code=status)


async def http_error_response(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404, 405...) in the shape of the route's protocol. A 405 says in
    ``Allow`` which methods the resource asked for takes, as the API document lists them."""
    headers = dict(exc.headers or {})
    path = request.url.path
    if exc.status_code == 405:
        allow = openapi.allowed_methods(request.app.openapi(), path)
        headers["Allow"] = allow or headers.get("Allow", "")
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    body = error_body(path, str(exc.detail), kind)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def build_app(model: Any, config: ServeConfig, token: str | None, admin_token: str | None = None):
    """Mount the OpenAI router, the error handlers, the middleware and the completed API
    document on KServe's app. The middleware runs outermost first: metrics, auth, the routes
    with nothing behind them, the per-client limit, the body limit."""
    app = kserve_app
    app.include_router(build_router(model.state), prefix="/openai/v1")
    app.add_exception_handler(ApiError, api_error_response)
    app.add_exception_handler(RequestValidationError, invalid_request_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)
    limits = config.limits
    app.add_middleware(
        BodyLimit, max_bytes=limits.max_body_bytes, read_timeout_s=limits.read_timeout_s
    )
    app.add_middleware(
        PerClientLimit, limit=limits.max_in_flight_per_client, exempt=config.auth.open_paths
    )
    app.add_middleware(UnservedModelRoutes, model_name=config.model_name)
    if not config.server.repository_routes:
        app.add_middleware(RepositoryRoutesOff)
    if token or admin_token:
        app.add_middleware(
            BearerAuth, token=token, open_paths=config.auth.open_paths, admin_token=admin_token
        )
    app.add_middleware(RequestMetrics)
    openapi.install(app, config, authenticated=bool(token))
    return app


class HostModelServer(kserve.ModelServer):
    """KServe's ModelServer bound to the configured host instead of always 0.0.0.0, its
    request heads limited in size and time (``http_guard``)."""

    def __init__(
        self, *, host: str, limits: LimitsSection, on_exit: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.bind_host = host
        self.limits = limits
        self.on_exit = on_exit  # called once, at the first SIGTERM or SIGINT

    def _hook_exit(self) -> None:
        """Run ``on_exit`` when uvicorn is told to stop, before it waits for open requests."""
        uv = self._rest_server._server
        handle_exit = uv.handle_exit

        def draining_exit(sig: int, frame: Any) -> None:
            if self.on_exit is not None:
                on_exit, self.on_exit = self.on_exit, None
                on_exit()
            handle_exit(sig, frame)

        uv.handle_exit = draining_exit

    async def _serve(self) -> None:
        # KServe binds 0.0.0.0; the configured host (127.0.0.1 in tests) is set here,
        # before uvicorn reads it.
        if self._rest_server is not None:
            self._rest_server.config.host = self.bind_host
            # X-Forwarded-For is not believed: any local process could name itself another
            # client and step around the per-client limit. Behind the gateway every request
            # comes from a gateway replica; the per-user limit is the gateway's.
            self._rest_server.config.proxy_headers = False
            self._rest_server.config.http = functools.partial(
                GuardedHttpToolsProtocol,
                max_head_bytes=self.limits.max_header_bytes,
                read_timeout_s=self.limits.read_timeout_s,
            )
            self._hook_exit()
        await super()._serve()


def run_server(config: ServeConfig, model_ref: str) -> None:
    """Load the model, mount every route, and serve until SIGTERM (which drains first)."""
    token = read_token(config)
    admin_token = read_admin_token(config)
    if token is None:
        log.warning(
            "auth.required is false and no token is set: every route of this server is open "
            "to anyone who can reach %s:%d",
            config.server.host,
            config.server.port,
        )
    model = TextGenerationModel(config, model_ref)
    model.load()
    build_app(model, config, token, admin_token)
    drain_s = config.server.drain_s
    # KServe logs three timing lines per request at INFO; the access log already says enough.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server = HostModelServer(
        host=config.server.host,
        limits=config.limits,
        on_exit=lambda: model.begin_drain(drain_s),
        http_port=config.server.port,
        grpc_port=config.server.grpc_port,
        enable_grpc=config.server.enable_grpc,
        grace_period=config.server.grace_period_s,
        enable_latency_logging=False,
    )
    log.info(
        "serving %s on http://%s:%d (OpenAI /openai/v1, v2 /v2, /metrics; auth %s; "
        "model-repository routes %s)",
        config.model_name,
        config.server.host,
        config.server.port,
        "on" if token else "off",
        "on (admin token)" if config.server.repository_routes else "off",
    )
    server.start([model])
