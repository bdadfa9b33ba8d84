"""Reading KServe logger events: the attributes, the content type, the prompts of a body."""

from __future__ import annotations

import json

import pytest

from workloads.monitor.sink_events import (
    REQUEST_TYPE,
    RESPONSE_TYPE,
    Rejected,
    check_content_type,
    read_event,
    read_prompts,
)

HEADERS = {
    "Ce-Id": "6b1f",
    "Ce-Specversion": "1.0",
    "Ce-Source": "predictor-pod",
    "Ce-Type": REQUEST_TYPE,
    "Ce-Inferenceservicename": "cloudops-assistant",
    "Ce-Namespace": "serving",
}


def body(**fields) -> bytes:
    return json.dumps({"model": "m", **fields}).encode()


def msg(role: str, content) -> dict:
    return {"role": role, "content": content}


CONVERSATION = [msg("system", "terse"), msg("user", "first"), msg("assistant", "ok")]
PARTS = [
    {"type": "text", "text": "what is in "},
    {"type": "image_url", "image_url": {"url": "data:,"}},
    {"type": "text", "text": "this chart?"},
]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (body(prompt="why is my pod pending?"), ("completion", ["why is my pod pending?"])),
        (body(prompt=["plan it", "", "apply it"]), ("completion", ["plan it", "apply it"])),
        (body(prompt=[1, 2, 3]), ("completion", [])),
        (body(prompt=[[1, 2], [3]]), ("completion", [])),
        (body(messages=[*CONVERSATION, msg("user", "second")]), ("chat", ["second"])),
        (
            body(messages=[msg("system", "only a system prompt")]),
            ("chat", ["only a system prompt"]),
        ),
        (body(messages=[msg("user", PARTS)]), ("chat", ["what is in this chart?"])),
        (body(messages=[msg("assistant", None)]), ("chat", [])),
        (body(input="embed me"), ("", [])),
        (b"", ("", [])),
        (b"  \n", ("", [])),
    ],
)
def test_prompts_of_openai_bodies(payload, expected):
    assert read_prompts(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe{}", "encoding"),
        (b"{", "json"),
        (b"[" * 100_000, "json"),
        (b"null", "shape"),
        (body(prompt={"text": "x"}), "shape"),
        (body(prompt=[1, "mixed"]), "shape"),
        (body(prompt=[True]), "shape"),
        (body(messages=[]), "shape"),
        (body(messages=["hi"]), "shape"),
        (body(messages=[{"content": "no role"}]), "shape"),
        (body(messages=[{"role": "user", "content": 5}]), "shape"),
        (body(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]), "shape"),
        (b'{"prompt": "\\udc00"}', "encoding"),
    ],
)
def test_malformed_bodies_are_400(payload, reason):
    with pytest.raises(Rejected) as caught:
        read_prompts(payload)
    assert caught.value.status == 400 and caught.value.reason == reason


def test_event_attributes_in_any_header_case():
    event = read_event({k.lower(): v for k, v in HEADERS.items()})
    assert (event.id, event.source, event.inference_service) == (
        "6b1f",
        "predictor-pod",
        "cloudops-assistant",
    )
    assert not event.is_response
    assert read_event({**HEADERS, "Ce-Type": RESPONSE_TYPE}).is_response


@pytest.mark.parametrize(
    "change",
    [
        {"Ce-Id": ""},
        {"Ce-Specversion": "0.3"},
        {"Ce-Type": "dev.knative.example"},
        {"Ce-Source": "   "},
    ],
)
def test_bad_attributes_are_400(change):
    with pytest.raises(Rejected) as caught:
        read_event({**HEADERS, **change})
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "value",
    [None, "", "application/json", "application/json; charset=UTF-8", "application/vnd.x+json"],
)
def test_json_content_types_pass(value):
    check_content_type(value)


@pytest.mark.parametrize(
    "value", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16"]
)
def test_other_content_types_are_415(value):
    with pytest.raises(Rejected) as caught:
        check_content_type(value)
    assert caught.value.status == 415
