"""Chat and Q&A rows: JSONL, JSON, CSV or Parquet files whose fields the config maps.

A row becomes a chat record (a ``messages`` list, or a question and an answer) or a text
record; its id is ``<source name>:<id field>``, or a hash of its content when there is none.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import FieldMap, OnError, RecordsSource, resolve_path
from workloads.data.ingest.context import IngestContext, read_text
from workloads.data.records import (
    StageResult,
    chat_record,
    qa_messages,
    rephrased_records,
    short_hash,
    text_record,
)

Rows = Iterator[tuple[str, Any]]


def _detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
    formats |= {".parquet": "parquet", ".pq": "parquet"}
    if suffix not in formats:
        raise UserError(
            f"{path}: cannot tell the format from the suffix {suffix!r}; "
            "set `format: jsonl|json|csv|parquet` on the source"
        )
    return formats[suffix]


def _jsonl_rows(path: Path, ctx: IngestContext) -> Rows:
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        ctx.seen += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            ctx.bad(
                where,
                f"not valid JSON ({exc.msg} at column {exc.colno})",
                "fix or delete that line",
                "malformed_json",
                raw=line,
            )
            continue
        yield where, row


def _json_rows(path: Path, ctx: IngestContext) -> Rows:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file") from exc
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of records at the top level")
    for index, row in enumerate(data, 1):
        ctx.seen += 1
        yield f"{path}: item {index}", row


def _csv_rows(path: Path, ctx: IngestContext) -> Rows:
    reader = csv.DictReader(read_text(path).splitlines())
    for row in reader:
        ctx.seen += 1
        where = f"{path}:{reader.line_num}"
        if None in row:  # more cells than header columns
            ctx.bad(
                where,
                f"{len(row[None])} more cell(s) than the header has columns",
                "quote cells that contain commas",
                "malformed_csv",
                raw={k: v for k, v in row.items() if k is not None},
            )
            continue
        yield where, row


def _parquet_rows(path: Path, ctx: IngestContext) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found; fix the path in the data config") from exc
    except (OSError, pa.ArrowException) as exc:
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from exc
    for index, row in enumerate(table.to_pylist(), 1):
        ctx.seen += 1
        yield f"{path}: row {index}", row


_READERS = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows, "parquet": _parquet_rows}


def _iter_rows(path: Path, fmt: str, ctx: IngestContext) -> Rows:
    """Yield ``(where, row)``; malformed items go through ``ctx.bad`` and are skipped."""
    reader = _READERS.get(fmt)
    return reader(path, ctx) if reader else iter(())


def _check_header(path: Path, fmt: str, src: RecordsSource) -> None:
    """For tabular files the columns are known up front: a mapping to a missing column is a
    config error, whatever the error policy."""
    columns: list[str] | None = None
    if fmt == "csv":
        header = next(csv.reader(read_text(path).splitlines()[:1]), [])
        columns = header
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            columns = pq.read_schema(path).names
        except Exception:  # reported with its own message when the rows are read
            return
    if columns is None:
        return
    for key, column in src.fields.model_dump().items():
        if column is not None and column not in columns:
            raise UserError(
                f"{path}:1: fields.{key} maps to column {column!r}, which is not in the header "
                f"({', '.join(columns) or 'empty'}); fix `fields.{key}` of source {src.name!r}"
            )


def _messages_from(value: Any) -> list[dict[str, str]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list):
        return None
    messages = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            return None
        if not isinstance(item.get("role"), str):
            return None
        messages.append({"role": item["role"], "content": item["content"]})
    return messages


def _wanted_fields(fm: FieldMap) -> dict[str, str | None]:
    """The mapped fields every row must have: ``messages``, ``question`` and ``answer``, or
    ``text``."""
    if fm.messages:
        return {"messages": fm.messages}
    if fm.question:
        return {"question": fm.question, "answer": fm.answer}
    return {"text": fm.text}


class _RowReader:
    """Turns the rows of one source into records, sending bad rows through ``ctx.bad``."""

    def __init__(self, src: RecordsSource, path: Path, ctx: IngestContext) -> None:
        self.src, self.fm, self.path, self.ctx = src, src.fields, path, ctx
        self.wanted = _wanted_fields(src.fields)

    def records(self, where: str, row: Any) -> list[dict[str, Any]]:
        """The records of one row (a Q&A row's rephrasings follow it), none when the row was
        reported as bad."""
        if not isinstance(row, dict):
            self.ctx.bad(
                where, "expected an object per record", "fix that record", "not_an_object", row
            )
            return []
        missing = {k: v for k, v in self.wanted.items() if v not in row}
        if missing:
            key, column = next(iter(missing.items()))
            self.ctx.bad(
                where,
                f"no field {column!r} (mapped by fields.{key}); the record has: "
                + ", ".join(sorted(map(str, row))),
                f"fix `fields.{key}` of source {self.src.name!r} or the record",
                "unknown_field",
                row,
            )
            return []
        fm = self.fm
        raw_id = row.get(fm.id) if fm.id else None
        category = (row.get(fm.category) if fm.category else None) or self.src.category
        category = str(category) if category not in (None, "") else None
        build = self._chat if fm.messages else self._qa if fm.question else self._text
        return build(where, row, raw_id, category)

    def _id(self, raw_id: Any, *content: Any) -> str:
        native = raw_id if raw_id not in (None, "") else short_hash(*content)
        return f"{self.src.name}:{native}"

    def _system(self, row: dict[str, Any]) -> Any:
        return row.get(self.fm.system) if self.fm.system else None

    def _chat(self, where: str, row: dict, raw_id: Any, category: str | None) -> list[dict]:
        messages = _messages_from(row[self.fm.messages])
        if messages is None:
            self.ctx.bad(
                where,
                f"field {self.fm.messages!r} is not a list of {{role, content}} objects",
                "fix that record",
                "malformed_messages",
                row,
            )
            return []
        system = self._system(row)
        if system and not any(m["role"] == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": str(system)})
        record_id = self._id(raw_id, messages)
        return [chat_record(record_id, messages, str(self.path), category, {"where": where})]

    def _qa(self, where: str, row: dict, raw_id: Any, category: str | None) -> list[dict]:
        question, answer = row[self.fm.question], row[self.fm.answer]
        if not isinstance(question, str) or not isinstance(answer, str):
            self.ctx.bad(
                where,
                "question and answer must be strings",
                "fix that record",
                "malformed_record",
                row,
            )
            return []
        rephrasings = row.get(self.fm.rephrasings, []) if self.fm.rephrasings else []
        if not isinstance(rephrasings, list) or not all(
            isinstance(q, str) and q.strip() for q in rephrasings
        ):
            self.ctx.bad(
                where,
                f"field {self.fm.rephrasings!r} must be a list of non-empty strings",
                "fix that record",
                "malformed_record",
                row,
            )
            return []
        system = self._system(row)
        messages = qa_messages(question, answer, str(system) if system else None)
        record_id = self._id(raw_id, question, answer)
        record = chat_record(record_id, messages, str(self.path), category, {"where": where})
        kept = rephrasings[: self.src.max_rephrasings]  # a None bound keeps them all
        return [record, *rephrased_records(record, kept)]

    def _text(self, where: str, row: dict, raw_id: Any, category: str | None) -> list[dict]:
        text = row[self.fm.text]
        if not isinstance(text, str):
            self.ctx.bad(where, "text must be a string", "fix that record", "malformed_record", row)
            return []
        record_id = self._id(raw_id, text)
        return [text_record(record_id, text, str(self.path), category, {"where": where})]


def ingest_records(src: RecordsSource, on_error: OnError) -> StageResult:
    path = resolve_path(src.path)
    fmt = _detect_format(path, src.format)
    if not path.exists():
        raise UserError(f"{path}: file not found; fix `path` of source {src.name!r}")
    _check_header(path, fmt, src)
    ctx = IngestContext(on_error)
    reader = _RowReader(src, path, ctx)
    records = []
    for where, row in _iter_rows(path, fmt, ctx):
        records.extend(reader.records(where, row))
    return StageResult(records, ctx.rejects, {"items": ctx.seen})
