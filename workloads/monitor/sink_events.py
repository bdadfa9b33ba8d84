"""What the sink reads: KServe inference-logger CloudEvents and the prompts in their bodies.

KServe's inference logger (the agent beside the predictor) posts every request, and every 200
response, as a binary-mode CloudEvent over HTTP: the attributes are ``ce-*`` headers
(``ce-specversion: 1.0``, ``ce-id``, ``ce-source``, ``ce-type``, ``ce-time``, and the extensions
``ce-inferenceservicename``, ``ce-namespace``, ``ce-component``, ``ce-endpoint``,
``ce-metadata``, ``ce-recordedtime``), the body is the inference request (or response) byte for
byte, and ``Content-Type`` is the client's own. ``ce-type`` tells requests
(``org.kubeflow.serving.inference.request``) from responses. The request path is not sent, so
the route is read from the body: an OpenAI chat request has ``messages``, a completion request
``prompt``.

Every check raises ``Rejected`` with a 4xx status and a message naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workloads.monitor.prompts import chat_prompt

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
REQUIRED_HEADERS = ("ce-specversion", "ce-id", "ce-source", "ce-type")


class Rejected(Exception):
    """An event the sink refuses: ``status`` is a 4xx, ``reason`` a metric label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    source: str
    inference_service: str
    namespace: str

    @property
    def is_response(self) -> bool:
        return self.type == RESPONSE_TYPE


def read_event(headers: Mapping[str, str]) -> Event:
    """The CloudEvent attributes of a binary-mode request (header names in any case)."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    missing = [h for h in REQUIRED_HEADERS if not lower.get(h)]
    if missing:
        raise Rejected(
            400,
            "headers",
            f"missing CloudEvent header(s) {', '.join(missing)}: send binary-mode CloudEvents "
            "as KServe's inference logger does",
        )
    if lower["ce-specversion"] != "1.0":
        raise Rejected(400, "headers", f"ce-specversion {lower['ce-specversion']!r}: expected 1.0")
    if lower["ce-type"] not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise Rejected(
            400,
            "headers",
            f"ce-type {lower['ce-type']!r} is not an inference event: expected "
            f"{REQUEST_TYPE} or {RESPONSE_TYPE}",
        )
    return Event(
        id=lower["ce-id"],
        type=lower["ce-type"],
        source=lower["ce-source"],
        inference_service=lower.get("ce-inferenceservicename", ""),
        namespace=lower.get("ce-namespace", ""),
    )


def check_content_type(value: str | None) -> None:
    """JSON (``application/json`` or ``application/*+json``) in UTF-8. No ``Content-Type`` at all
    passes: the logger forwards the client's, and a client may have sent none."""
    if not value:
        return
    media, *params = (part.strip().lower() for part in value.split(";"))
    kind, _, sub = media.partition("/")
    if kind != "application" or not (sub == "json" or sub.endswith("+json")):
        raise Rejected(415, "content_type", f"content type {media!r}: send application/json")
    for param in params:
        name, _, charset = param.partition("=")
        if name.strip() == "charset" and charset.strip().strip('"') not in ("utf-8", "utf8"):
            raise Rejected(415, "content_type", f"charset {charset!r}: send UTF-8")


def read_prompts(body: bytes) -> tuple[str, list[str]]:
    """``(route, prompts)`` of an OpenAI request body: ``("chat", [text])`` for a chat,
    ``("completion", [...])`` for a completion, ``("", [])`` for anything else (a GET's empty
    body, token-id prompts, other protocols), which has nothing to sample."""
    if not body.strip():
        return "", []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Rejected(
            400, "encoding", f"the body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(
            400, "json", f"the body is not JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    except RecursionError:
        raise Rejected(400, "json", "the body nests too deeply") from None
    if not isinstance(data, dict):
        raise Rejected(400, "shape", "the body is not a JSON object")
    if "messages" in data:
        prompts = [_chat_text(data["messages"])]
        route = "chat"
    elif "prompt" in data:
        prompts, route = _completion_prompts(data["prompt"]), "completion"
    else:
        return "", []
    prompts = [p for p in prompts if p.strip()]
    for prompt in prompts:
        _check_unicode(prompt)
    return route, prompts


def _chat_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "shape", "messages must be a non-empty list")
    plain = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise Rejected(400, "shape", f"messages[{i}] must be an object with a string role")
        plain.append({"role": message["role"], "content": _content_text(message, i)})
    return chat_prompt(plain)


def _content_text(message: dict[str, Any], index: int) -> str:
    """A message's text: a string, or the text parts of a list of content parts (images and
    other parts carry no text to sample)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise Rejected(
        400, "shape", f"messages[{index}].content must be a string or a list of content parts"
    )


def _completion_prompts(prompt: Any) -> list[str]:
    """A string, or a list of strings; token-id prompts (lists of integers) have no text."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list):
        if all(isinstance(p, str) for p in prompt):
            return prompt
        if all(_is_int(p) or (isinstance(p, list) and all(map(_is_int, p))) for p in prompt):
            return []
    raise Rejected(
        400, "shape", "prompt must be a string, a list of strings, or token ids (not sampled)"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_unicode(text: str) -> None:
    """JSON may escape a lone surrogate (``\\ud800``), which no UTF-8 log can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Rejected(
            400, "encoding", f"a prompt holds an unpaired surrogate at character {exc.start}"
        ) from None
