"""What every route shares: the engine, the tokenizer, the limits, and the error type.

Every check a request can fail raises ``ApiError`` with a 4xx status and a message naming the
field to fix; the app turns it into the error shape of the route's protocol
(``middleware.error_body``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from workloads.serve.config import ServeConfig
from workloads.serve.engine import Engine, EngineStopped, QueueFull
from workloads.serve.sampling import PromptSampler
from workloads.serve.sequence import SamplingParams, Sequence

# Logged (never seen by anyone) for a request whose client closed the connection first.
CLIENT_GONE = 499


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )


@dataclass
class Submitted:
    seq: Sequence
    deadline: float


class ServingState:
    def __init__(
        self,
        config: ServeConfig,
        engine: Engine,
        tokenizer: Any,
        sampler: PromptSampler | None = None,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.engine = engine
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.model_name = config.model_name
        self.created = int(time.time())
        # Chat templating and tokenizing take long for a big request: they run on this one
        # thread, so the event loop (health probes, streams) never waits on them.
        self._tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        # No token is longer than this many bytes of text, so a longer text than
        # max_prompt_tokens of them is refused without spending time tokenizing it.
        self.max_prompt_bytes = self.limits.max_prompt_tokens * _longest_token_bytes(tokenizer)

    async def off_loop(self, fn, *args):
        """Run ``fn(*args)`` on the tokenizing thread and wait for it without blocking."""
        return await asyncio.get_running_loop().run_in_executor(self._tokenizing, fn, *args)

    # ---- validation ------------------------------------------------------------------
    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise ApiError(
                404,
                f"model {name!r} is not served here; this server serves {self.model_name!r}",
                param="model",
                code="model_not_found",
            )

    def _check_prompt(self, ids: list[int], param: str) -> list[int]:
        if not ids:  # an empty prompt (or one the tokenizer keeps nothing of): start of text
            start = self.tokenizer.bos_token_id
            ids = [start if start is not None else self.tokenizer.eos_token_id]
        if len(ids) > self.limits.max_prompt_tokens:
            raise ApiError(
                400,
                f"{param} has {len(ids)} tokens; this server takes at most "
                f"{self.limits.max_prompt_tokens}",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def check_max_tokens(self, value: int | None, param: str = "max_tokens") -> None:
        limit = self.limits.max_new_tokens
        if value is not None and value > limit:
            msg = f"{param} is {value}; this server allows at most {limit}"
            raise ApiError(400, msg, param=param)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        from jinja2.exceptions import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            msg = f"messages do not fit the chat template: {exc}"
            raise ApiError(400, msg, param="messages") from exc
        return self._check_prompt(self._tokenize(text, "messages"), "messages")

    def encode_text(self, text: str) -> list[int]:
        return self._check_prompt(self._tokenize(text, "prompt"), "prompt")

    def _tokenize(self, text: str, param: str) -> list[int]:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.max_prompt_bytes:
            raise ApiError(
                400,
                f"{param} is {size} bytes, more than {self.limits.max_prompt_tokens} tokens "
                "hold; shorten it",
                param=param,
                code="context_length_exceeded",
            )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_texts(self, texts: list[str]) -> list[list[int]]:
        return [self.encode_text(text) for text in texts]

    def sample_prompt(self, route: str, text: str) -> None:
        if self.sampler is not None:
            self.sampler.offer(route, text)

    # ---- generation ------------------------------------------------------------------
    def submit(
        self,
        prompt_ids: list[int],
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        stop: list[str] | None,
    ) -> Submitted:
        return self.submit_all([prompt_ids], max_tokens, temperature, top_p, stop)[0]

    def submit_all(
        self,
        prompts: list[list[int]],
        max_tokens: int | None,
        temperature: float,
        top_p: float,
        stop: list[str] | None,
    ) -> list[Submitted]:
        """Submit every prompt of one request or none of them (429 leaves nothing queued)."""
        limit = self.limits.max_new_tokens
        if max_tokens is None:
            max_tokens = min(self.limits.default_max_tokens, limit)
        self.check_max_tokens(max_tokens)
        try:
            params = SamplingParams(
                max_tokens=max_tokens, temperature=temperature, top_p=top_p, stop=tuple(stop or ())
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        try:
            seqs = self.engine.submit_all(prompts, params)
        except QueueFull as exc:
            raise ApiError(
                429, f"server busy: {exc}; retry later", type="rate_limit_error"
            ) from exc
        except EngineStopped as exc:
            raise ApiError(503, str(exc), type="server_error") from exc
        deadline = time.monotonic() + self.limits.request_timeout_s
        return [Submitted(seq, deadline) for seq in seqs]

    async def stream(self, sub: Submitted) -> AsyncIterator[tuple[str, str]]:
        """Yield (kind, text) pairs: deltas, then ("done", finish_reason) or ("error", msg)."""
        queue = sub.seq.queue
        try:
            while True:
                if queue.empty():
                    left = sub.deadline - time.monotonic()
                    try:
                        async with asyncio.timeout(max(left, 0.001)):
                            event = await queue.get()
                    except TimeoutError:
                        limit = self.limits.request_timeout_s
                        yield "error", f"request timed out after {limit:g} s (request_timeout_s)"
                        return
                else:  # tokens already waiting: no timer needed
                    event = queue.get_nowait()
                if event.kind == "delta":
                    yield "delta", event.text
                elif event.kind == "done":
                    yield "done", event.finish_reason or "stop"
                    return
                else:
                    yield "error", event.text
                    return
        finally:
            if sub.seq.finish_reason is None:
                sub.seq.cancel()

    async def collect_all(self, subs: list[Submitted], receive) -> list[tuple[str, str]] | None:
        """Every answer of a request, or None once the client has gone: its sequences are
        cancelled then, and the engine drops them at its next step."""
        answers = asyncio.ensure_future(asyncio.gather(*(self.collect(s) for s in subs)))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({answers, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if answers.done():
            return answers.result()
        answers.cancel()
        for sub in subs:
            sub.seq.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answers
        return None

    async def collect(self, sub: Submitted) -> tuple[str, str]:
        parts: list[str] = []
        async for kind, text in self.stream(sub):
            if kind == "delta":
                parts.append(text)
            elif kind == "done":
                return "".join(parts), text
            else:
                status = 504 if "timed out" in text else 503 if "shutting down" in text else 500
                raise ApiError(status, text, type="server_error")
        raise ApiError(500, "generation ended without a result", type="server_error")


def _longest_token_bytes(tokenizer: Any) -> int:
    """The most bytes of text one token of ``tokenizer`` stands for."""
    tokens = list(tokenizer.get_vocab())
    return max(len(tokenizer.convert_tokens_to_string([t]).encode("utf-8")) for t in tokens)


async def _disconnected(receive) -> None:
    """Return when the client closes the connection (the request body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
