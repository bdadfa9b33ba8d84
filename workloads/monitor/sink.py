"""The drift sampling sink: KServe's inference logger posts each request to it, and it samples
the prompts into the same log the project's own server writes (``PromptSampler``: scrubbed,
``{"ts", "route", "prompt", "redactions"}`` per line, a local JSONL file or numbered objects under
``s3://bucket/prefix``), so ``tuneops monitor drift`` reads either runtime's traffic unchanged.

Routes: ``POST <sink.path>`` (the events), ``GET <sink.health_path>``, ``GET /metrics``; anything
else is 404, another method on a route 405 with ``Allow``. A body over ``sink.max_body_bytes`` is
a 413 before anything parses it; bad events are 4xx (see ``sink_events``), never a 5xx. With a
token set, everything but the health path needs ``Authorization: Bearer <token>``. SIGTERM: the
server stops accepting, finishes what is in flight, the sampler writes its last (partial) S3
object, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import ssl
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tuneops.core.errors import UserError
from tuneops.core.process import port_in_use
from workloads.monitor.config import SinkSection, check_exposure, read_sink_token
from workloads.monitor.sink_events import Rejected, check_content_type, read_event, read_prompts
from workloads.serve import metrics as serve_metrics
from workloads.serve.middleware import BearerAuth, BodyLimit, send_json
from workloads.serve.sampling import PromptSampler

log = logging.getLogger(__name__)


class _Written(Collector):
    """The sampler's count of records written, under the sink's name (the sampler counts in
    the server's metric, which this registry does not otherwise show)."""

    def collect(self):
        samples = [s for m in serve_metrics.PROMPTS_SAMPLED.collect() for s in m.samples]
        total = sum(s.value for s in samples if s.name.endswith("_total"))
        help_text = "Sampled prompts written to the drift log, scrubbed."
        yield CounterMetricFamily("tuneops_sink_prompts_written", help_text, value=total)


# The sink's own registry: the model server's metrics (imported with the sampler) stay out of
# the sink's /metrics, so they never mix into the serving dashboards and autoscaling queries.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REGISTRY.register(_Written())
REQUESTS = Counter(
    "tuneops_sink_requests_total",
    "Requests to the sink's ingest path, by status.",
    ["status"],
    registry=REGISTRY,
)
REJECTED = Counter(
    "tuneops_sink_events_rejected_total",
    "Events refused with a 4xx, by reason.",
    ["reason"],
    registry=REGISTRY,
)
IGNORED = Counter(
    "tuneops_sink_events_ignored_total",
    "Events accepted with no prompt to sample (responses, empty or non-OpenAI bodies).",
    ["reason"],
    registry=REGISTRY,
)
PROMPTS = Counter(
    "tuneops_sink_prompts_total",
    "Prompts read from request events, by route and whether the sampling draw took them.",
    ["route", "sampled"],
    registry=REGISTRY,
)


class SinkBodyLimit(BodyLimit):
    """The server's body limit, answering with the sink's own config key and counting."""

    async def _too_large(self, scope, send) -> None:
        REJECTED.labels(reason="too_large").inc()
        message = f"request body over {self.max_bytes} bytes (sink.max_body_bytes)"
        await send_json(send, 413, {"error": message}, [(b"connection", b"close")])


class CountIngest:
    """Counts the ingest path's answers by status, whatever layer gave them (401, 413...)."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                REQUESTS.labels(status=str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, watch)


class Ingest:
    """The ingest endpoint: read the event, sample its prompts."""

    def __init__(self, sampler: PromptSampler) -> None:
        self.sampler = sampler

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            event = read_event(request.headers)
            if event.is_response:
                IGNORED.labels(reason="response").inc()
                note = "response events carry no prompt: set the logger's mode to request"
                return JSONResponse({"id": event.id, "ignored": note}, 202)
            check_content_type(request.headers.get("content-type"))
            route, prompts = read_prompts(body)
        except Rejected as exc:
            REJECTED.labels(reason=exc.reason).inc()
            log.info("refused an event (%s): %s", exc.status, exc.message)
            return JSONResponse({"error": exc.message}, exc.status)
        if not prompts:
            IGNORED.labels(reason="no_prompt").inc()
        sampled = 0
        for prompt in prompts:
            taken = self.sampler.offer(route, prompt)
            PROMPTS.labels(route=route, sampled=str(taken).lower()).inc()
            sampled += taken
        return JSONResponse({"id": event.id, "prompts": len(prompts), "sampled": sampled})


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


def build_app(cfg: SinkSection, sampler: PromptSampler, token: str | None = None) -> Any:
    """The sink's ASGI app, outermost first: count, authenticate, limit the body, route."""
    routes = [
        Route(cfg.path, Ingest(sampler).handle, methods=["POST"]),
        Route(cfg.health_path, _health, methods=["GET"]),
        Route("/metrics", _metrics, methods=["GET"]),
    ]
    app: Any = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app = SinkBodyLimit(app, cfg.max_body_bytes)
    app = BearerAuth(app, token, open_paths=[cfg.health_path])
    return CountIngest(app, cfg.path)


def _check_start(cfg: SinkSection) -> str | None:
    """Everything that would stop the server once started, as one clear error now."""
    token = read_sink_token(cfg.auth)
    check_exposure(cfg, token)
    _check_tls(cfg)
    if port_in_use(cfg.host, cfg.port):
        raise UserError(f"port {cfg.port} on {cfg.host} is taken: pick another with --port")
    return token


def _check_tls(cfg: SinkSection) -> None:
    tls = cfg.tls
    if tls.cert_file is None or tls.key_file is None:
        return
    for key, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if not path.is_file():
            raise UserError(f"sink.tls.{key} {path} does not exist (mount the secret there)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            tls.cert_file, tls.key_file
        )
    except (ssl.SSLError, ValueError) as exc:
        raise UserError(f"sink.tls: {tls.cert_file} and {tls.key_file} do not load: {exc}") from exc


def run_sink(cfg: SinkSection) -> None:
    """Serve until SIGTERM or SIGINT, then write what the sampler holds and return (exit 0)."""
    import uvicorn

    token = _check_start(cfg)
    destination = cfg.destination()
    try:
        sampler = PromptSampler(cfg.rate, destination, flush_every=cfg.flush_every, seed=cfg.seed)
    except OSError as exc:
        raise UserError(f"sink.log {destination}: cannot write there ({exc.strerror})") from exc
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(cfg, sampler, token),
            host=cfg.host,
            port=cfg.port,
            lifespan="off",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(cfg.shutdown_s / 2)),
            ssl_certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            ssl_keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
        )
    )
    # uvicorn raises the signal that stopped it again once it is done; with these handlers in
    # place that is a no-op, so a SIGTERM ends in a clean exit 0 after the flush below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    scheme = "https" if cfg.tls.cert_file else "http"
    log.info(
        "sink on %s://%s:%d%s (token %s), sampling rate %g, writing to %s",
        scheme,
        cfg.host,
        cfg.port,
        cfg.path,
        "required" if token else "off",
        cfg.rate,
        destination,
    )
    try:
        server.run()
    finally:
        sampler.close(timeout=cfg.shutdown_s / 2)
    log.info("sink stopped; sampled prompts written to %s", destination)
