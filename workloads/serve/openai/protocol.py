"""Request models of the OpenAI routes, and the helpers that put responses on the wire.

Request bodies are validated by the pydantic models below. Fields the server does not use but
that cannot change an answer (``user``, ``metadata``...) are ignored, as OpenAI clients send
many; a field that would change the answer and that the server cannot honour (``tools``,
``response_format``, ``logprobs``, ``seed``...) is refused with a 400 naming it, never dropped.
Responses are the `openai` package's own types, so what the official client parses is exactly
what the server built.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from openai.types import CompletionUsage, Model
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from workloads.serve.state import Submitted


class _Loose(BaseModel):
    # Unknown fields that change nothing are ignored; the known ones take exactly the JSON
    # types the API document gives them (no 0 for false, no 1.0 for an integer).
    model_config = ConfigDict(extra="ignore", strict=True)


# A stop string: an empty one is refused by the schema itself.
Text = Annotated[str, Field(min_length=1)]


def _whole(value: Any) -> Any:
    """JSON Schema's integer: 2.0 is one (strict pydantic alone would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A count of one or more; ``max_tokens`` is bounded by the server's limit in the API document.
Count = Annotated[int, Field(ge=1), BeforeValidator(_whole)]


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


# Fields that change what a model answers, which this server does not implement; each maps to
# the values that mean "not asked for" (sent by clients that fill every field).
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "seed": (None,),
    "suffix": (None, ""),
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
}


def refuse_unsupported(data: Any) -> Any:
    """A request asking for something the server would silently not do is refused; one that
    says "not asked for" has the field dropped before the strict model sees it."""
    if isinstance(data, dict):
        for field, inert in UNSUPPORTED.items():
            if field in data and data[field] not in inert:
                raise ValueError(f"{field} is not supported by this server; leave it out")
        return {key: value for key, value in data.items() if key not in UNSUPPORTED}
    return data


class _GenerationRequest(BaseModel):
    # A top-level field this server does not know is a 400 naming it (as OpenAI answers an
    # unrecognized argument), not ignored: a typo such as `max_token` would otherwise change
    # the answer without a word. Known fields that change nothing are declared below.
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    max_tokens: Count | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: Annotated[int, Field(ge=1, le=1), BeforeValidator(_whole)] = Field(
        1, description="one choice per prompt is supported"
    )
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # OpenAI fields that change nothing here: accepted and not used.
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None

    _unsupported = model_validator(mode="before")(refuse_unsupported)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Count | None = None


class CompletionRequest(_GenerationRequest):
    # One prompt or a non-empty list of them. A prompt may be empty (or hold nothing the
    # tokenizer keeps): generation then starts from the start-of-text token.
    prompt: str | Annotated[list[str], Field(min_length=1)]
    echo: bool = False


class ModelsResponse(BaseModel):
    """The body of ``GET /openai/v1/models``."""

    object: Literal["list"]
    data: list[Model]


def sse(payload: Any) -> str:
    """One server-sent event: a JSON body, or a bare string such as ``[DONE]``."""
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {body}\n\n"


def sse_error(message: str) -> str:
    """The event that tells a streaming client generation failed."""
    return sse({"error": {"message": message, "type": "server_error"}})


def dump(obj: BaseModel) -> dict[str, Any]:
    return obj.model_dump(mode="json", exclude_none=True)


def count_usage(*subs: Submitted) -> CompletionUsage:
    """Token counts summed over the submitted sequences."""
    prompt = sum(len(s.seq.prompt_ids) for s in subs)
    completion = sum(s.seq.completion_tokens for s in subs)
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
