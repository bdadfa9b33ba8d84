"""``POST /openai/v1/chat/completions``: one answer to a conversation, whole or streamed (SSE)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from workloads.monitor.prompts import chat_prompt
from workloads.serve.openai.protocol import ChatCompletionRequest, count_usage, dump, sse, sse_error
from workloads.serve.state import CLIENT_GONE, ServingState, Submitted


class ChatCompletions:
    """Chat completions over the shared serving state."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def chat_completions(self, body: ChatCompletionRequest, request: Request):
        state = self.state
        state.check_model(body.model)
        state.check_max_tokens(body.max_tokens)
        state.check_max_tokens(body.max_completion_tokens, "max_completion_tokens")
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt_ids = await state.off_loop(state.encode_chat, messages)
        state.sample_prompt("chat", chat_prompt(messages))
        max_tokens = body.max_completion_tokens or body.max_tokens
        sub = state.submit(prompt_ids, max_tokens, body.temperature, body.top_p, body.stop)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if body.stream:
            events = self._stream(sub, rid, created, body.include_usage)
            return StreamingResponse(events, media_type="text/event-stream")
        answers = await state.collect_all([sub], request.receive)
        if answers is None:  # the client went away; nobody reads a response
            return Response(status_code=CLIENT_GONE)
        ((text, finish),) = answers
        result = ChatCompletion(
            id=rid,
            created=created,
            model=state.model_name,
            object="chat.completion",
            choices=[
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            usage=count_usage(sub),
        )
        return JSONResponse(dump(result))

    async def _stream(
        self, sub: Submitted, rid: str, created: int, include_usage: bool
    ) -> AsyncIterator[str]:
        yield self._chunk(rid, created, {"role": "assistant", "content": ""})
        async for kind, text in self.state.stream(sub):
            if kind == "delta":
                yield self._chunk(rid, created, {"content": text})
            elif kind == "done":
                yield self._chunk(rid, created, {}, finish=text)
            else:
                yield sse_error(text)
        if include_usage:
            yield self._chunk(rid, created, {}, usage=count_usage(sub))
        yield sse("[DONE]")

    def _chunk(
        self,
        rid: str,
        created: int,
        delta: dict[str, Any],
        finish: str | None = None,
        usage: CompletionUsage | None = None,
    ) -> str:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        chunk = ChatCompletionChunk(
            id=rid,
            created=created,
            model=self.state.model_name,
            object="chat.completion.chunk",
            choices=choices,
            usage=usage,
        )
        return sse(dump(chunk))
