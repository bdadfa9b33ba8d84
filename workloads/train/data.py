"""Read a dataset snapshot (contract 1) and shape its splits for TRL's SFTTrainer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tuneops.core.errors import UserError

log = logging.getLogger(__name__)


def open_snapshot(ref: str) -> Any:
    """Resolve ``ref`` (a snapshot dir, ``<name>`` or ``<name>/<id>``) to a snapshot object."""
    from workloads.data.snapshot import load_snapshot

    return load_snapshot(ref)


@dataclass
class PreparedSplits:
    train: list[dict]
    validation: list[dict]
    skipped: list[dict]
    kind: str  # "chat" or "text"


def _has_assistant(record: dict) -> bool:
    return any(
        m.get("role") == "assistant" and str(m.get("content", "")).strip()
        for m in record.get("messages") or []
    )


def to_rows(records: list[dict], split: str, skipped: list[dict]) -> tuple[list[dict], set[str]]:
    """Turn contract records into SFT rows: ``{"messages": [...]}`` or ``{"text": ...}``."""
    rows: list[dict] = []
    kinds: set[str] = set()
    for record in records:
        kind = record.get("kind") or ("text" if "text" in record else "chat")
        if kind == "text":
            text = str(record.get("text") or "")
            if not text.strip():
                skipped.append({"id": record.get("id"), "split": split, "reason": "empty text"})
                continue
            rows.append({"text": text})
        else:
            if not _has_assistant(record):
                skipped.append(
                    {"id": record.get("id"), "split": split, "reason": "no assistant turn"}
                )
                continue
            messages = [
                {"role": str(m["role"]), "content": str(m["content"])} for m in record["messages"]
            ]
            rows.append({"messages": messages})
        kinds.add(kind)
    return rows, kinds


def prepare_splits(snapshot: Any, *, max_eval_examples: int | None) -> PreparedSplits:
    """Read train and validation; records that cannot train are returned in ``skipped``."""
    skipped: list[dict] = []
    train, train_kinds = to_rows(snapshot.split("train"), "train", skipped)
    try:
        val_records = snapshot.split("validation")
    except (UserError, FileNotFoundError, KeyError):
        val_records = []
    validation, val_kinds = to_rows(val_records, "validation", skipped)
    if max_eval_examples is not None:
        validation = validation[:max_eval_examples]
    if not train:
        raise UserError(f"dataset snapshot {snapshot.path} has no trainable train records")
    kinds = train_kinds | val_kinds
    if len(kinds) > 1:
        raise UserError(
            f"dataset snapshot {snapshot.path} mixes chat and text records; train them in "
            "separate runs (one kind per snapshot)"
        )
    if skipped:
        log.warning("%d records cannot train (listed in skipped.jsonl of the run)", len(skipped))
    return PreparedSplits(train, validation, skipped, kinds.pop())
