"""Read a dataset snapshot (contract 1) and shape its splits for TRL's SFTTrainer.

Snapshots are read through ``workloads.data.snapshot.load_snapshot``; until that module exists,
a small reader of the same on-disk layout stands in, so training never depends on import order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneops.errors import UserError
from tuneops.paths import cache_dir

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class Snapshot:
    """The parts of a snapshot training needs: identity, location, manifest and splits."""

    id: str
    name: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[dict]:
        file = self.path / f"{name}.jsonl"
        if not file.is_file():
            raise UserError(f"snapshot {self.path} has no {name}.jsonl")
        records = []
        with open(file, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{file} line {lineno}: not valid JSON ({exc.msg})") from exc
        return records


def _read_dir(path: Path) -> Snapshot:
    manifest_file = path / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    return Snapshot(
        id=str(manifest.get("snapshot_id") or manifest.get("id") or path.name),
        name=str(manifest.get("name") or manifest.get("dataset") or path.parent.name),
        path=path,
        manifest=manifest,
    )


def _fallback_load(ref: str) -> Snapshot:
    path = Path(ref).expanduser()
    if path.is_dir() and (path / "train.jsonl").is_file():
        return _read_dir(path)
    root = cache_dir() / "datasets"
    name, _, snap_id = ref.partition("/")
    if not snap_id:
        latest = root / name / "LATEST"
        if not latest.is_file():
            raise UserError(
                f"dataset {ref!r} not found: no {latest}; build it with `tuneops data build` "
                "or pass a snapshot directory"
            )
        snap_id = latest.read_text().strip()
    snap_dir = root / name / snap_id
    if not (snap_dir / "train.jsonl").is_file():
        raise UserError(f"dataset snapshot {snap_dir} not found or has no train.jsonl")
    return _read_dir(snap_dir)


def open_snapshot(ref: str) -> Any:
    """Resolve ``ref`` (a snapshot dir, ``<name>`` or ``<name>/<id>``) to a snapshot object."""
    try:
        from workloads.data.snapshot import load_snapshot
    except ImportError:
        return _fallback_load(ref)
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
