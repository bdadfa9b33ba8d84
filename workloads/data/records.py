"""The record and reject shapes every stage passes along, and small helpers over them.

A record inside the pipeline is a plain dict:

- ``id``: stable identifier, ``<source name>:<native id>``;
- ``kind``: ``"chat"`` (with ``messages``: a list of ``{"role", "content"}``) or ``"text"``
  (with ``text``: continued pre-training text);
- ``source``: where it came from (a file path, an issue URL, an API definition name);
- ``category``: a topic label or ``None``;
- ``origin`` (pipeline only, not written to the snapshot): file and line for error messages;
- ``group`` (pipeline only): on a rephrasing, the id of the record it rewords (``group_of``).

A stage takes a list of records and returns a :class:`StageResult`: the records it kept, the
ones it dropped (each with a reason), and counters. ``in = out + rejected`` holds per stage.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

SNAPSHOT_KEYS_CHAT = ("id", "messages", "source", "category", "kind")
SNAPSHOT_KEYS_TEXT = ("id", "text", "source", "kind")


@dataclass
class StageResult:
    """Output of one stage."""

    records: list[dict[str, Any]]
    rejects: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def reject(self, record: dict[str, Any] | None, reason: str, detail: str = "", **extra) -> None:
        self.rejects.append(make_reject("", record, reason, detail, **extra))


def make_reject(
    stage: str, record: dict[str, Any] | None, reason: str, detail: str = "", **extra: Any
) -> dict[str, Any]:
    reject: dict[str, Any] = {"stage": stage, "reason": reason, "detail": detail}
    if record is not None:
        reject["id"] = record.get("id")
        reject["source"] = record.get("source")
        reject["record"] = public_record(record)
    reject.update(extra)
    return reject


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the snapshot stores it (contract: fixed keys, no pipeline internals)."""
    if record.get("kind") == "text":
        return {key: record.get(key) for key in SNAPSHOT_KEYS_TEXT}
    return {key: record.get(key) for key in SNAPSHOT_KEYS_CHAT}


def chat_record(
    id: str,
    messages: list[dict[str, str]],
    source: str,
    category: str | None = None,
    origin: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record = {
        "id": id,
        "kind": "chat",
        "messages": messages,
        "source": source,
        "category": category,
    }
    if origin:
        record["origin"] = origin
    return record


def group_of(record: dict[str, Any]) -> str:
    """The id of the row a record came from: its own, or for a rephrasing (a record with the
    same answer to another wording of the question) the original's. A group is split and
    deduplicated as one."""
    return record.get("group") or record["id"]


def rephrased_records(record: dict[str, Any], questions: list[str]) -> list[dict[str, Any]]:
    """One record per other wording of a Q&A record's question, ids ``<id>~r<n>``."""
    out = []
    for n, question in enumerate(questions, start=1):
        messages = [dict(m) for m in record["messages"]]
        user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[user]["content"] = question
        out.append(
            {**record, "id": f"{record['id']}~r{n}", "messages": messages, "group": record["id"]}
        )
    return out


def text_record(
    id: str, text: str, source: str, category: str | None = None, origin: dict | None = None
) -> dict[str, Any]:
    record = {"id": id, "kind": "text", "text": text, "source": source, "category": category}
    if origin:
        record["origin"] = origin
    return record


def qa_messages(question: str, answer: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    messages.append({"role": "assistant", "content": answer})
    return messages


def content_text(record: dict[str, Any], *, include_system: bool = False) -> str:
    """All the text a record carries (the turns' contents, or the text), joined."""
    if record.get("kind") == "text":
        return str(record.get("text") or "")
    parts = []
    for message in record.get("messages") or []:
        if not include_system and message.get("role") == "system":
            continue
        parts.append(str(message.get("content") or ""))
    return "\n".join(parts)


def short_hash(*parts: Any, length: int = 12) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode()
        digest.update(data)
        digest.update(b"\x00")
    return digest.hexdigest()[:length]


def reason_counts(rejects: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(r["reason"] for r in rejects).items()))
