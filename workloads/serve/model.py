"""The KServe model: text in, text out over KServe's v1 and v2 protocols.

``TextGenerationModel`` is a ``kserve.Model``: ``load()`` loads the model reference with
``workloads.models.load.load_model``, starts the batching engine and builds the
``ServingState`` that the OpenAI routes share; ``predict()`` answers v1 (``{"instances":
[...]}``) and v2 (a ``BYTES`` input tensor) requests through the same engine. This module
imports kserve, so the CLI imports it only when a server starts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from tuneops.core.paths import cache_dir
from workloads.models.load import LoadedModel, load_model
from workloads.serve.config import ServeConfig, cpu_threads
from workloads.serve.engine import Engine
from workloads.serve.kserve_argv import hidden_argv
from workloads.serve.sampling import PromptSampler
from workloads.serve.state import ApiError, ServingState

with hidden_argv():
    import kserve
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

log = logging.getLogger(__name__)


class TextGenerationModel(kserve.Model):
    """Text in, text out over KServe's v1 and v2 protocols, batched by the engine."""

    def __init__(self, config: ServeConfig, model_ref: str) -> None:
        super().__init__(config.model_name)
        self.config = config
        self.model_ref = model_ref
        self.state: ServingState | None = None
        self.loaded: LoadedModel | None = None

    def load(self) -> bool:
        import torch

        cfg = self.config
        torch.set_num_threads(cpu_threads(cfg.cpu_threads))
        loaded = load_model(
            self.model_ref, dtype=cfg.dtype, device=cfg.device, prepack=cfg.cpu_prepack
        )
        engine = self._engine(loaded)
        sampler = self._sampler()
        engine.start()
        self.loaded = loaded
        self.state = ServingState(cfg, engine, loaded.tokenizer, sampler)
        log.info("%s", self.load_summary())
        self.ready = True
        return self.ready

    def _engine(self, loaded: LoadedModel) -> Engine:
        cfg = self.config
        return Engine(
            loaded.model,
            loaded.tokenizer,
            device=loaded.device,
            max_batch=cfg.batching.max_batch,
            wait_ms=cfg.batching.wait_ms,
            max_prefill_batch=cfg.batching.max_prefill_batch,
            max_queue=cfg.limits.max_queue,
            model_name=cfg.model_name,
        )

    def _sampler(self) -> PromptSampler | None:
        """The drift prompt sampler, or None when ``sampling.rate`` is 0."""
        sampling = self.config.sampling
        if sampling.rate <= 0:
            return None
        destination = sampling.log or str(cache_dir() / "serve" / "prompts.jsonl")
        return PromptSampler(
            sampling.rate, destination, flush_every=sampling.flush_every, seed=sampling.seed
        )

    def load_summary(self) -> str:
        """One line: what was loaded from where, on which device, in which dtype and why."""
        loaded = self.loaded
        dtype = str(loaded.dtype).removeprefix("torch.")
        extras = ", LoRA merged" if loaded.adapter_merged else ""
        if loaded.packed_linears:
            extras += f", {loaded.packed_linears} Linear weights prepacked"
        return (
            f"loaded {self.config.model_name} from {self.model_ref} ({loaded.device}{extras}) "
            f"in {loaded.load_seconds:.1f} s; dtype {dtype}: {loaded.precision_reason}"
        )

    def begin_drain(self, deadline_s: float) -> None:
        """SIGTERM: readiness fails and new requests are refused at once; whatever is still
        running after ``deadline_s`` fails with a clear error."""
        self.ready = False
        if self.state is not None:
            self.state.engine.begin_drain(deadline_s)
        log.info("draining: not ready, admitting nothing, %g s to finish", deadline_s)

    def stop(self) -> None:
        self.ready = False
        if self.state is not None:
            self.state.engine.stop(timeout=self.config.server.grace_period_s)
            if self.state.sampler is not None:
                self.state.sampler.close()

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        prompts, params, v2 = read_prompts(payload)
        if not prompts:
            raise InvalidInput("no prompts in the request")
        options = parse_parameters(params)
        try:
            texts = await self._generate(prompts, options, "v2" if v2 else "v1")
        except ApiError as exc:
            if exc.status >= 500 or exc.status == 429:
                raise
            raise InvalidInput(exc.message) from exc
        if not v2:
            return {"predictions": texts}
        output = InferOutput(name="text", shape=[len(texts)], datatype="BYTES", data=texts)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
        )

    async def _generate(self, prompts: list[str], options: dict[str, Any], route: str):
        """Encode, sample for drift, submit every prompt, and wait for all the answers."""
        state = self.state
        if len(prompts) > state.limits.max_prompts:
            raise InvalidInput(
                f"{len(prompts)} prompts in one request; this server takes at most "
                f"{state.limits.max_prompts}"
            )

        def encode(prompt: str) -> list[int]:
            if options["chat"]:
                return state.encode_chat([{"role": "user", "content": prompt}])
            return state.encode_text(prompt)

        encoded = await state.off_loop(lambda: [encode(p) for p in prompts])
        for prompt in prompts:
            state.sample_prompt(route, prompt)
        # All prompts of the request are admitted together or not at all.
        subs = state.submit_all(
            encoded, options["max_tokens"], options["temperature"], 1.0, options["stop"]
        )
        results = await asyncio.gather(*(state.collect(s) for s in subs))
        return [text for text, _ in results]


def read_prompts(payload: Any) -> tuple[list[str], dict[str, Any], bool]:
    """(prompts, parameters, is v2) from a v2 ``InferRequest`` or a v1 ``{"instances"}`` body."""
    if isinstance(payload, InferRequest):
        inputs = [i for i in payload.inputs if i.datatype == "BYTES"]
        if not inputs:
            raise InvalidInput("send the prompts as a BYTES input tensor (e.g. 'text')")
        try:
            prompts = _strings(inputs[0].data)
        except (UnicodeDecodeError, TypeError) as exc:
            raise InvalidInput(f"the BYTES input is not UTF-8 text: {exc}") from exc
        shape = list(inputs[0].shape or [])
        whole = all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        if not whole or math.prod(shape) != len(prompts):
            raise InvalidInput(
                f"the BYTES input's shape {shape} does not hold its {len(prompts)} prompts"
            )
        return prompts, dict(payload.parameters or {}), True
    if isinstance(payload, dict) and isinstance(payload.get("instances"), list):
        items = payload["instances"]
        prompts = [
            i if isinstance(i, str) else i.get("prompt") if isinstance(i, dict) else None
            for i in items
        ]
        if not all(isinstance(p, str) for p in prompts):
            raise InvalidInput('each instance is a string or {"prompt": "..."}')
        params = payload.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidInput("parameters is an object of generation options")
        return prompts, dict(params or {}), False
    raise InvalidInput('expected a v2 request with a BYTES input or {"instances": [...]}')


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


def _number(
    params: dict[str, Any], name: str, default: Any, kind: type, low: float, high: float
) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"parameter {name} must be a number, got {value!r}")
    if kind is int and int(value) != value:
        raise InvalidInput(f"parameter {name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"parameter {name} must be between {low:g} and {high:g}")
    return kind(value)


def parse_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The generation options of a v1/v2 request: max_tokens, temperature, stop, chat."""
    chat = params.get("chat", True)
    if not isinstance(chat, bool):
        raise InvalidInput("parameter chat must be true or false")
    stop = params.get("stop")
    if stop is None:
        stop = []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise InvalidInput("parameter stop must be a string or a list of strings")
    return {
        "max_tokens": _number(params, "max_tokens", None, int, 1, 1 << 20),
        "temperature": _number(params, "temperature", 0.0, float, 0.0, 2.0),
        "stop": stop,
        "chat": chat,
    }
