"""The KServe model server: one process, one port, every protocol.

``TextGenerationModel`` is a ``kserve.Model``: KServe's ``ModelServer`` gives it the v1 and v2
(Open Inference Protocol) routes, health and readiness, and ``/metrics``. The project's own
OpenAI-compatible router is mounted on the same FastAPI app (``kserve.model_server.app``)
before ``start()``; KServe's built-in OpenAI layer needs vLLM, which is not used here.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.serve.config import ServeConfig
from workloads.serve.state import ApiError, ServingState

log = logging.getLogger(__name__)


def import_kserve():
    """Import kserve without letting it parse our command line.

    ``kserve.model_server`` runs ``argparse.parse_known_args()`` on ``sys.argv`` at import time,
    with prefix matching on, so ``--config x`` would be read as its ``--configure_logging x``
    and exit. It sees an empty command line instead.
    """
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve
        import kserve.model_server
    finally:
        sys.argv = saved
    return kserve


def cpu_threads(configured: int) -> int:
    """``cpu_threads`` from the config; 0 means one per usable core minus one, at least one."""
    if configured > 0:
        return configured
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def read_token(config: ServeConfig) -> str | None:
    """The bearer token from the environment variable, else the secret file, else None."""
    auth = config.auth
    if auth.token_env and os.environ.get(auth.token_env):
        return os.environ[auth.token_env].strip()
    if auth.token_file is not None:
        path = Path(auth.token_file)
        if not path.is_file():
            raise UserError(f"auth.token_file {path} does not exist (mount the secret there)")
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise UserError(f"auth.token_file {path} is empty")
        return token
    if auth.required:
        raise UserError(
            f"auth.required is on but no token is set: export {auth.token_env} "
            "or set auth.token_file"
        )
    return None


def _model_class():
    kserve = import_kserve()
    from kserve.errors import InvalidInput

    class TextGenerationModel(kserve.Model):
        """Text in, text out over KServe's v1 and v2 protocols, batched by the engine."""

        def __init__(self, config: ServeConfig, model_ref: str) -> None:
            super().__init__(config.model_name)
            self.config = config
            self.model_ref = model_ref
            self.state: ServingState | None = None
            self.loaded = None

        def load(self) -> bool:
            from workloads.models.load import load_model
            from workloads.serve.engine import Engine
            from workloads.serve.sampling import PromptSampler

            cfg = self.config
            import torch

            torch.set_num_threads(cpu_threads(cfg.cpu_threads))
            loaded = load_model(
                self.model_ref, dtype=cfg.dtype, device=cfg.device, prepack=cfg.cpu_prepack
            )
            engine = Engine(
                loaded.model,
                loaded.tokenizer,
                device=loaded.device,
                max_batch=cfg.batching.max_batch,
                wait_ms=cfg.batching.wait_ms,
                max_prefill_batch=cfg.batching.max_prefill_batch,
                max_queue=cfg.limits.max_queue,
                model_name=cfg.model_name,
            )
            sampler = None
            if cfg.sampling.rate > 0:
                from tuneops.core.paths import cache_dir

                destination = cfg.sampling.log or str(cache_dir() / "serve" / "prompts.jsonl")
                sampler = PromptSampler(
                    cfg.sampling.rate,
                    destination,
                    flush_every=cfg.sampling.flush_every,
                    seed=cfg.sampling.seed,
                )
            engine.start()
            self.loaded = loaded
            self.state = ServingState(cfg, engine, loaded.tokenizer, sampler)
            log.info(
                "loaded %s from %s (%s, %s%s%s) in %.1f s",
                cfg.model_name,
                self.model_ref,
                loaded.device,
                str(loaded.dtype).removeprefix("torch."),
                ", LoRA merged" if loaded.adapter_merged else "",
                f", {loaded.packed_linears} Linear weights prepacked"
                if loaded.packed_linears
                else "",
                loaded.load_seconds,
            )
            self.ready = True
            return self.ready

        def stop(self) -> None:
            self.ready = False
            if self.state is not None:
                self.state.engine.stop(timeout=self.config.server.grace_period_s)
                if self.state.sampler is not None:
                    self.state.sampler.close()

        # ---- v1 / v2 inference -----------------------------------------------------
        def _prompts(self, payload: Any) -> tuple[list[str], dict[str, Any], bool]:
            from kserve.protocol.infer_type import InferRequest

            if isinstance(payload, InferRequest):
                inputs = [i for i in payload.inputs if i.datatype == "BYTES"]
                if not inputs:
                    raise InvalidInput("send the prompts as a BYTES input tensor (e.g. 'text')")
                try:
                    prompts = _strings(inputs[0].data)
                except (UnicodeDecodeError, TypeError) as exc:
                    raise InvalidInput(f"the BYTES input is not UTF-8 text: {exc}") from exc
                return prompts, dict(payload.parameters or {}), True
            if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
                items = payload["instances"]
                prompts = [i if isinstance(i, str) else (i or {}).get("prompt") for i in items]
                if not all(isinstance(p, str) for p in prompts):
                    raise InvalidInput('each instance is a string or {"prompt": "..."}')
                return prompts, dict(payload.get("parameters") or {}), False
            raise InvalidInput('expected a v2 request with a BYTES input or {"instances": [...]}')

        async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            import asyncio

            from kserve.protocol.infer_type import InferOutput, InferResponse

            prompts, params, v2 = self._prompts(payload)
            if not prompts:
                raise InvalidInput("no prompts in the request")
            options = _parameters(params)
            state = self.state
            try:
                encoded = []
                for prompt in prompts:
                    if options["chat"]:
                        encoded.append(state.encode_chat([{"role": "user", "content": prompt}]))
                    else:
                        encoded.append(state.encode_text(prompt))
                    state.sample_prompt("v2" if v2 else "v1", prompt)
                subs = [
                    state.submit(
                        ids, options["max_tokens"], options["temperature"], 1.0, options["stop"]
                    )
                    for ids in encoded
                ]
                results = await asyncio.gather(*(state.collect(s) for s in subs))
            except ApiError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise
                raise InvalidInput(exc.message) from exc
            texts = [text for text, _ in results]
            if not v2:
                return {"predictions": texts}
            output = InferOutput(name="text", shape=[len(texts)], datatype="BYTES", data=texts)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[output],
            )

    return TextGenerationModel


def _strings(data: Any) -> list[str]:
    """Flatten a BYTES tensor's data (JSON strings, or bytes from the binary extension)."""
    if isinstance(data, str | bytes):
        data = [data]
    out: list[str] = []
    for item in data if data is not None else []:
        if isinstance(item, list | tuple):
            out.extend(_strings(item))
        elif isinstance(item, bytes):
            out.append(item.decode("utf-8"))
        elif isinstance(item, str):
            out.append(item)
        else:
            raise TypeError(f"element {item!r} is not text")
    return out


def _parameters(params: dict[str, Any]) -> dict[str, Any]:
    from kserve.errors import InvalidInput

    def number(name: str, default: Any, kind: type, low: float, high: float) -> Any:
        value = params.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"parameter {name} must be a number, got {value!r}")
        if kind is int and int(value) != value:
            raise InvalidInput(f"parameter {name} must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise InvalidInput(f"parameter {name} must be between {low:g} and {high:g}")
        return kind(value)

    chat = params.get("chat", True)
    if not isinstance(chat, bool):
        raise InvalidInput("parameter chat must be true or false")
    stop = params.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidInput("parameter stop must be a string or a list of strings")
    return {
        "max_tokens": number("max_tokens", None, int, 1, 1 << 20),
        "temperature": number("temperature", 0.0, float, 0.0, 2.0),
        "stop": stop,
        "chat": chat,
    }


def build_app(model: Any, config: ServeConfig, token: str | None):
    """Mount the OpenAI router, the error handlers and the middleware on KServe's app."""
    import_kserve()
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.model_server import app

    from workloads.serve.middleware import BearerAuth, RequestMetrics
    from workloads.serve.openai_api import build_router

    app.include_router(build_router(model.state), prefix="/openai/v1")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{loc}: {err.get('msg')}")
        message = "invalid request: " + "; ".join(problems)
        if request.url.path.startswith("/openai/"):
            body = ApiError(400, message).body()
            return JSONResponse(body, status_code=400)
        return JSONResponse({"error": message}, status_code=422)

    if token:
        app.add_middleware(BearerAuth, token=token, open_paths=config.auth.open_paths)
    app.add_middleware(RequestMetrics)
    return app


def run_server(config: ServeConfig, model_ref: str) -> None:
    """Load the model, mount every route, and serve until SIGTERM (which drains first)."""
    kserve = import_kserve()
    token = read_token(config)
    model = _model_class()(config, model_ref)
    model.load()
    build_app(model, config, token)

    class ModelServer(kserve.ModelServer):
        async def _serve(self) -> None:
            # KServe binds 0.0.0.0; the configured host (127.0.0.1 in tests) is set here,
            # before uvicorn reads it.
            if self._rest_server is not None:
                self._rest_server.config.host = config.server.host
            await super()._serve()

    # KServe logs three timing lines per request at INFO; the access log already says enough.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server = ModelServer(
        http_port=config.server.port,
        grpc_port=config.server.grpc_port,
        enable_grpc=config.server.enable_grpc,
        grace_period=config.server.grace_period_s,
        enable_latency_logging=False,
    )
    log.info(
        "serving %s on http://%s:%d (OpenAI /openai/v1, v2 /v2, /metrics; auth %s)",
        config.model_name,
        config.server.host,
        config.server.port,
        "on" if token else "off",
    )
    server.start([model])
