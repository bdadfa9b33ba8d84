"""``POST /openai/v1/completions``: text completions of one prompt or a list, whole or streamed.

A list of prompts is answered in one response, a choice per prompt; streaming takes a single
prompt. With ``echo`` each choice starts with its prompt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import Completion, CompletionChoice, CompletionUsage

from workloads.serve.openai.protocol import CompletionRequest, count_usage, dump, sse, sse_error
from workloads.serve.state import CLIENT_GONE, ApiError, ServingState, Submitted


def choice(text: str, finish: str | None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}


class Completions:
    """Text completions over the shared serving state."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def completions(self, body: CompletionRequest, request: Request):
        state = self.state
        state.check_model(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        most = state.limits.max_prompts
        if len(prompts) > most:
            msg = f"{len(prompts)} prompts in one request; this server takes at most {most}"
            raise ApiError(400, msg, param="prompt")
        if body.stream and len(prompts) > 1:
            raise ApiError(400, "streaming takes a single prompt", param="prompt")
        encoded = await state.off_loop(state.encode_texts, prompts)
        for prompt in prompts:
            state.sample_prompt("completion", prompt)
        subs = state.submit_all(encoded, body.max_tokens, body.temperature, body.top_p, body.stop)
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prefixes = prompts if body.echo else [""] * len(prompts)
        if body.stream:
            events = self._stream(subs[0], prefixes[0], rid, created, body.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        results = await state.collect_all(subs, request.receive)
        if results is None:  # the client went away; nobody reads a response
            return Response(status_code=CLIENT_GONE)
        choices = [
            choice(prefix + text, finish, index=i)
            for i, (prefix, (text, finish)) in enumerate(zip(prefixes, results, strict=True))
        ]
        return JSONResponse(dump(self._completion(rid, created, choices, count_usage(*subs))))

    def _completion(
        self, rid: str, created: int, choices: list[dict[str, Any]], usage: CompletionUsage
    ) -> Completion:
        return Completion(
            id=rid,
            created=created,
            model=self.state.model_name,
            object="text_completion",
            choices=[CompletionChoice(**c) for c in choices],
            usage=usage,
        )

    async def _stream(
        self, sub: Submitted, prefix: str, rid: str, created: int, include_usage: bool
    ) -> AsyncIterator[str]:
        if prefix:
            yield self._chunk(rid, created, prefix, None)
        async for kind, text in self.state.stream(sub):
            if kind == "delta":
                yield self._chunk(rid, created, text, None)
            elif kind == "done":
                yield self._chunk(rid, created, "", text)
            else:
                yield sse_error(text)
        if include_usage:
            yield self._chunk(rid, created, "", None, usage=count_usage(sub))
        yield sse("[DONE]")

    def _chunk(
        self,
        rid: str,
        created: int,
        text: str,
        finish: str | None,
        usage: CompletionUsage | None = None,
    ) -> str:
        # Stream chunks carry finish_reason null until the last, which the typed
        # CompletionChoice does not allow, so they are plain dicts of the same shape.
        body: dict[str, Any] = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": self.state.model_name,
            "choices": [] if usage else [choice(text, finish)],
        }
        if usage is not None:
            body["usage"] = dump(usage)
        return sse(body)
