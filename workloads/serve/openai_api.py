"""The OpenAI-compatible routes (`/openai/v1/...`), mounted on KServe's FastAPI app.

Request bodies are validated by the pydantic models below (fields the server does not use are
ignored, as OpenAI clients send many); responses are the `openai` package's own types, so what
the official client parses is exactly what the server built.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from workloads.serve.state import ApiError, ServingState, Submitted


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Loose):
    type: Literal["text"]
    text: str


class ChatMessage(_Loose):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Loose):
    include_usage: bool = False


class _GenerationRequest(_Loose):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1, description="one choice per prompt is supported")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]
    echo: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value


def _sse(payload: Any) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {body}\n\n"


def _dump(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(mode="json", exclude_none=True)


def build_router(state: ServingState) -> APIRouter:
    from openai.types import Completion, CompletionChoice, CompletionUsage, Model
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    router = APIRouter()

    @router.get("/models")
    async def list_models() -> JSONResponse:
        card = Model(id=state.model_name, created=state.created, object="model", owned_by="tuneops")
        return JSONResponse({"object": "list", "data": [_dump(card)]})

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        state.check_model(body.model)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        prompt_ids = state.encode_chat(messages)
        users = [m["content"] for m in messages if m["role"] == "user"]
        state.sample_prompt("chat", users[-1] if users else messages[-1]["content"])
        max_tokens = body.max_completion_tokens or body.max_tokens
        sub = state.submit(prompt_ids, max_tokens, body.temperature, body.top_p, body.stop)
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            def chunk(delta: dict[str, Any], finish: str | None = None, usage=None) -> str:
                choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
                return _sse(
                    _dump(
                        ChatCompletionChunk(
                            id=rid,
                            created=created,
                            model=state.model_name,
                            object="chat.completion.chunk",
                            choices=choices,
                            usage=usage,
                        )
                    )
                )

            async def stream() -> AsyncIterator[str]:
                yield chunk({"role": "assistant", "content": ""})
                async for kind, text in state.stream(sub):
                    if kind == "delta":
                        yield chunk({"content": text})
                    elif kind == "done":
                        yield chunk({}, finish=text)
                    else:
                        yield _sse({"error": {"message": text, "type": "server_error"}})
                if include_usage:
                    yield chunk({}, usage=_usage(CompletionUsage, sub))
                yield _sse("[DONE]")

            return StreamingResponse(stream(), media_type="text/event-stream")

        text, finish = await state.collect(sub)
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
            usage=_usage(CompletionUsage, sub),
        )
        return JSONResponse(_dump(result))

    @router.post("/completions")
    async def completions(body: CompletionRequest, request: Request):
        state.check_model(body.model)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        encoded = [state.encode_text(p) for p in prompts]
        for prompt in prompts:
            state.sample_prompt("completion", prompt)
        subs = [
            state.submit(ids, body.max_tokens, body.temperature, body.top_p, body.stop)
            for ids in encoded
        ]
        rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prefixes = prompts if body.echo else [""] * len(prompts)

        def make(choices: list[dict[str, Any]], usage=None) -> Completion:
            return Completion(
                id=rid,
                created=created,
                model=state.model_name,
                object="text_completion",
                choices=[CompletionChoice(**c) for c in choices],
                usage=usage,
            )

        def chunk(text: str, finish: str | None, usage=None) -> str:
            # Stream chunks carry finish_reason null until the last, which the typed
            # CompletionChoice does not allow, so they are plain dicts of the same shape.
            body: dict[str, Any] = {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": state.model_name,
                "choices": [] if usage else [_choice(text, finish)],
            }
            if usage is not None:
                body["usage"] = _dump(usage)
            return _sse(body)

        if body.stream:
            if len(subs) > 1:
                for sub in subs:
                    sub.seq.cancel()
                raise ApiError(400, "streaming takes a single prompt", param="prompt")
            sub = subs[0]
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            async def stream() -> AsyncIterator[str]:
                if prefixes[0]:
                    yield chunk(prefixes[0], None)
                async for kind, text in state.stream(sub):
                    if kind == "delta":
                        yield chunk(text, None)
                    elif kind == "done":
                        yield chunk("", text)
                    else:
                        yield _sse({"error": {"message": text, "type": "server_error"}})
                if include_usage:
                    yield chunk("", None, usage=_usage(CompletionUsage, sub))
                yield _sse("[DONE]")

            return StreamingResponse(stream(), media_type="text/event-stream")

        results = await asyncio.gather(*(state.collect(sub) for sub in subs))
        choices = [
            _choice(prefix + text, finish, index=i)
            for i, (prefix, (text, finish)) in enumerate(zip(prefixes, results, strict=True))
        ]
        return JSONResponse(_dump(make(choices, usage=_usage(CompletionUsage, *subs))))

    return router


def _choice(text: str, finish: str | None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}


def _usage(usage_cls: Any, *subs: Submitted) -> Any:
    prompt = sum(len(s.seq.prompt_ids) for s in subs)
    completion = sum(s.seq.completion_tokens for s in subs)
    return usage_cls(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
