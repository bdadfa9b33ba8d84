"""Stage 1, ingest: turn every source named in the config into records.

Sources: chat/Q&A rows (JSONL, JSON, CSV, Parquet; fields mapped by config), a GitHub issues
export, a folder of Markdown/text documents, and the Kubernetes API reference
(:mod:`workloads.data.k8s_api`).

Bad input (a malformed line, a field mapping that names a missing field) either stops the build
with one message naming file, line and fix (``on_error="fail"``), or sends the raw item to the
rejects with the same explanation (``on_error="quarantine"``). An unreadable file always stops
the build: there is no record to quarantine.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import (
    DataConfig,
    DocsSource,
    GitHubSource,
    K8sApiSource,
    OnError,
    RecordsSource,
    resolve_path,
)
from workloads.data.records import (
    StageResult,
    chat_record,
    make_reject,
    qa_messages,
    short_hash,
    text_record,
)

QUARANTINE_HINT = "or run with --on-error=quarantine to send such records to rejects.jsonl"


@dataclass
class IngestContext:
    """Carries the error policy and collects quarantined items and counters for one source."""

    on_error: OnError
    rejects: list[dict[str, Any]] = field(default_factory=list)
    seen: int = 0

    def bad(self, where: str, problem: str, fix: str, reason: str, raw: Any = None) -> None:
        if self.on_error == "fail":
            raise UserError(f"{where}: {problem}; {fix}, {QUARANTINE_HINT}")
        reject = make_reject("ingest", None, reason, f"{where}: {problem}", where=where)
        if raw is not None:
            reject["raw"] = raw if not isinstance(raw, str) else raw[:4000]
        self.rejects.append(reject)

    def drop(self, record: dict[str, Any] | None, reason: str, detail: str, **extra: Any) -> None:
        """A well-formed item that is not usable (an open issue, an empty section)."""
        self.rejects.append(make_reject("ingest", record, reason, detail, **extra))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a leading BOM is not content
    except FileNotFoundError as exc:
        raise UserError(f"{path}: file not found; fix the path in the data config") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a folder; name a file in the data config") from exc
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-encode the file as UTF-8"
        ) from exc
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); check its permissions") from exc


# --------------------------------------------------------------------------- rows (Q&A, chat)


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


def _iter_rows(path: Path, fmt: str, ctx: IngestContext) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, row)``; malformed items go through ``ctx.bad`` and are skipped."""
    if fmt == "jsonl":
        for number, line in enumerate(_read_text(path).splitlines(), 1):
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
    elif fmt == "json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file"
            ) from exc
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of records at the top level")
        for index, row in enumerate(data, 1):
            ctx.seen += 1
            yield f"{path}: item {index}", row
    elif fmt == "csv":
        text = _read_text(path)
        reader = csv.DictReader(text.splitlines())
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
    elif fmt == "parquet":
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


def _check_header(path: Path, fmt: str, src: RecordsSource) -> None:
    """For tabular files the columns are known up front: a mapping to a missing column is a
    config error, whatever the error policy."""
    columns: list[str] | None = None
    if fmt == "csv":
        header = next(csv.reader(_read_text(path).splitlines()[:1]), [])
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


def ingest_records(src: RecordsSource, on_error: OnError) -> StageResult:
    path = resolve_path(src.path)
    fmt = _detect_format(path, src.format)
    if not path.exists():
        raise UserError(f"{path}: file not found; fix `path` of source {src.name!r}")
    _check_header(path, fmt, src)
    ctx = IngestContext(on_error)
    fm = src.fields
    records = []
    for where, row in _iter_rows(path, fmt, ctx):
        if not isinstance(row, dict):
            ctx.bad(where, "expected an object per record", "fix that record", "not_an_object", row)
            continue
        wanted = {"messages": fm.messages} if fm.messages else {}
        if not fm.messages and fm.question:
            wanted = {"question": fm.question, "answer": fm.answer}
        elif not fm.messages:
            wanted = {"text": fm.text}
        missing = {k: v for k, v in wanted.items() if v not in row}
        if missing:
            key, column = next(iter(missing.items()))
            ctx.bad(
                where,
                f"no field {column!r} (mapped by fields.{key}); the record has: "
                + ", ".join(sorted(map(str, row))),
                f"fix `fields.{key}` of source {src.name!r} or the record",
                "unknown_field",
                row,
            )
            continue
        origin = {"where": where}
        raw_id = row.get(fm.id) if fm.id else None
        category = (row.get(fm.category) if fm.category else None) or src.category
        category = str(category) if category not in (None, "") else None
        if fm.messages:
            messages = _messages_from(row[fm.messages])
            if messages is None:
                ctx.bad(
                    where,
                    f"field {fm.messages!r} is not a list of {{role, content}} objects",
                    "fix that record",
                    "malformed_messages",
                    row,
                )
                continue
            system = row.get(fm.system) if fm.system else None
            if system and not any(m["role"] == "system" for m in messages):
                messages.insert(0, {"role": "system", "content": str(system)})
            native = raw_id if raw_id not in (None, "") else short_hash(messages)
            records.append(
                chat_record(f"{src.name}:{native}", messages, str(path), category, origin)
            )
        elif fm.question:
            question, answer = row[fm.question], row[fm.answer]
            if not isinstance(question, str) or not isinstance(answer, str):
                ctx.bad(
                    where,
                    "question and answer must be strings",
                    "fix that record",
                    "malformed_record",
                    row,
                )
                continue
            system = row.get(fm.system) if fm.system else None
            messages = qa_messages(question, answer, str(system) if system else None)
            native = raw_id if raw_id not in (None, "") else short_hash(question, answer)
            records.append(
                chat_record(f"{src.name}:{native}", messages, str(path), category, origin)
            )
        else:
            text = row[fm.text]
            if not isinstance(text, str):
                ctx.bad(where, "text must be a string", "fix that record", "malformed_record", row)
                continue
            native = raw_id if raw_id not in (None, "") else short_hash(text)
            records.append(text_record(f"{src.name}:{native}", text, str(path), category, origin))
    return StageResult(records, ctx.rejects, {"items": ctx.seen})


# --------------------------------------------------------------------------- GitHub export


def _load_json_documents(path: Path) -> list[Any]:
    """Items of one `gh api` output file: a JSON array, several arrays back to back (what
    ``--paginate`` writes without ``--slurp``), a slurped array of arrays, or JSON lines."""
    text = _read_text(path)
    decoder = json.JSONDecoder()
    items: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); export it again with "
                "`gh api --paginate ... > file`"
            ) from exc
        if isinstance(doc, list) and doc and all(isinstance(d, list) for d in doc):
            for page in doc:
                items.extend(page)
        elif isinstance(doc, list):
            items.extend(doc)
        else:
            items.append(doc)
    return items


def _ts(value: str | None) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_bot(user: dict[str, Any] | None) -> bool:
    user = user or {}
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def _pick_answer(
    issue: dict[str, Any], comments: list[dict[str, Any]], src: GitHubSource
) -> dict[str, Any] | None:
    usable = [c for c in comments if (c.get("body") or "").strip()]
    if not src.include_bots:
        usable = [c for c in usable if not _is_bot(c.get("user"))]
    if src.answer == "maintainer_last":
        maintainers = set(src.maintainer_associations)
        picked = [c for c in usable if c.get("author_association") in maintainers]
        return picked[-1] if picked else None
    # "closing": the comment posted with the close (GitHub's "Close with comment" writes the
    # comment and the close within seconds), preferring the user who closed the issue.
    closed_at = _ts(issue.get("closed_at"))
    if closed_at is None:
        return None
    window = [
        c
        for c in usable
        if _ts(c.get("created_at"))
        and 0 <= (closed_at - _ts(c["created_at"])).total_seconds() <= src.close_window_seconds
    ]
    closer = ((issue.get("closed_by") or {}) or {}).get("login")
    by_closer = [c for c in window if (c.get("user") or {}).get("login") == closer]
    picked = by_closer or window
    return picked[-1] if picked else None


def ingest_github(src: GitHubSource, on_error: OnError) -> StageResult:
    issues_path = resolve_path(src.issues)
    comments_path = resolve_path(src.comments)
    ctx = IngestContext(on_error)
    issues = _load_json_documents(issues_path)
    if comments_path.is_dir():
        comment_files = sorted(comments_path.glob("*.json"))
    elif comments_path.exists():
        comment_files = [comments_path]
    else:
        raise UserError(f"{comments_path}: not found; fix `comments` of source {src.name!r}")
    by_issue: dict[str, list[dict[str, Any]]] = {}
    for path in comment_files:
        for index, comment in enumerate(_load_json_documents(path), 1):
            if not isinstance(comment, dict) or "issue_url" not in comment:
                ctx.bad(
                    f"{path}: item {index}",
                    "not a comment object with `issue_url`",
                    "export comments with `gh api repos/OWNER/REPO/issues/comments --paginate`",
                    "malformed_comment",
                    comment,
                )
                continue
            by_issue.setdefault(comment["issue_url"], []).append(comment)
    for comments in by_issue.values():
        comments.sort(key=lambda c: (c.get("created_at") or "", c.get("id") or 0))

    records = []
    for index, issue in enumerate(issues, 1):
        ctx.seen += 1
        where = f"{issues_path}: item {index}"
        if not isinstance(issue, dict) or not {"url", "number", "title"} <= set(issue):
            ctx.bad(
                where,
                "not an issue object (needs url, number, title)",
                "export issues with `gh api 'repos/OWNER/REPO/issues?state=closed' --paginate`",
                "malformed_issue",
                issue,
            )
            continue
        repo = "/".join(str(issue.get("repository_url", "")).rstrip("/").split("/")[-2:])
        native = f"{repo}#{issue['number']}" if repo else f"#{issue['number']}"
        stub = {"id": f"{src.name}:{native}", "source": issue.get("html_url") or issue["url"]}
        if "pull_request" in issue:
            ctx.drop(stub, "pull_request", f"{native} is a pull request, not an issue")
            continue
        if issue.get("state") != "closed" or issue.get("state_reason") != "completed":
            ctx.drop(
                stub,
                "not_solved",
                f"{native} is {issue.get('state')}/{issue.get('state_reason')}, "
                "only closed/completed issues become pairs",
            )
            continue
        answer = _pick_answer(issue, by_issue.get(issue["url"], []), src)
        if answer is None:
            ctx.drop(stub, "no_answer", f"{native}: no comment matches answer={src.answer!r}")
            continue
        title = str(issue["title"]).strip()
        body = str(issue.get("body") or "").strip()
        question = f"{title}\n\n{body}" if body else title
        labels = [
            lbl.get("name") if isinstance(lbl, dict) else lbl for lbl in issue.get("labels") or []
        ]
        category = next(
            (src.label_categories[n] for n in labels if n in src.label_categories), src.category
        )
        records.append(
            chat_record(
                stub["id"],
                qa_messages(question, str(answer["body"])),
                stub["source"],
                category,
                {"where": where, "answer_url": answer.get("html_url")},
            )
        )
    return StageResult(records, ctx.rejects, {"items": ctx.seen})


# --------------------------------------------------------------------------- documents

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def split_sections(text: str, max_chars: int) -> list[tuple[str, str]]:
    """Split Markdown into ``(heading path, body)`` at headings outside code fences; bodies
    longer than ``max_chars`` are cut at paragraph boundaries."""
    sections: list[tuple[list[str], list[str]]] = [([], [])]
    trail: list[str] = []
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            level = len(match.group(1))
            trail = [*trail[: level - 1], match.group(2).strip()]
            sections.append((list(trail), []))
        else:
            sections[-1][1].append(line)
    out = []
    for heads, lines in sections:
        heading = " > ".join(heads)
        body = "\n".join(lines).strip()
        if not body:
            continue
        chunk: list[str] = []
        size = 0
        for para in re.split(r"\n\s*\n", body):
            if chunk and size + len(para) > max_chars:
                out.append((heading, "\n\n".join(chunk)))
                chunk, size = [], 0
            chunk.append(para)
            size += len(para) + 2
        if chunk:
            out.append((heading, "\n\n".join(chunk)))
    return out


def ingest_docs(src: DocsSource, on_error: OnError) -> StageResult:
    root = resolve_path(src.path)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; fix `path` of source {src.name!r}")
    ctx = IngestContext(on_error)
    files = sorted({p for pattern in src.patterns for p in root.glob(pattern) if p.is_file()})
    records = []
    sections = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        parts = split_sections(_read_text(path), src.max_section_chars)
        for index, (heading, body) in enumerate(parts):
            ctx.seen += 1
            text = f"{heading}\n\n{body}" if heading else body
            record = text_record(
                f"{src.name}:{rel}#{index}", text, str(path), src.category, {"where": f"{path}"}
            )
            if len(body) < src.min_section_chars:
                ctx.drop(
                    record,
                    "short_section",
                    f"{len(body)} chars < min_section_chars={src.min_section_chars}",
                )
                continue
            sections.append(record)
            if src.emit_text:
                records.append(record)
    stats: dict[str, Any] = {"items": ctx.seen, "files": len(files), "sections": len(sections)}
    if src.generate.enabled:
        from workloads.data.qgen import generate_pairs

        generated = generate_pairs(sections, src.generate, ctx)
        records.extend(generated)
        stats["generated_pairs"] = len(generated)
    if not src.emit_text and not src.generate.enabled:
        for record in sections:
            ctx.drop(record, "not_emitted", "emit_text is off and question generation is off")
    return StageResult(records, ctx.rejects, stats)


# --------------------------------------------------------------------------- all sources


def ingest(config: DataConfig, *, progress: bool = False) -> StageResult:
    """Read every source in config order; ids are unique (a repeated id is rejected)."""
    from tqdm import tqdm

    from workloads.data.k8s_api import ingest_k8s_api

    readers = {
        RecordsSource: ingest_records,
        GitHubSource: ingest_github,
        DocsSource: ingest_docs,
        K8sApiSource: ingest_k8s_api,
    }
    result = StageResult([], [], {"sources": {}})
    seen_ids: set[str] = set()
    for src in tqdm(config.sources, desc="ingest", unit="source", disable=not progress):
        part = readers[type(src)](src, config.on_error)
        kept = []
        for record in part.records:
            if record["id"] in seen_ids:
                part.rejects.append(
                    make_reject("ingest", record, "duplicate_id", f"id {record['id']} seen before")
                )
                continue
            seen_ids.add(record["id"])
            kept.append(record)
        for reject in part.rejects:
            reject["stage"] = "ingest"
            reject.setdefault("source_name", src.name)
        result.records.extend(kept)
        result.rejects.extend(part.rejects)
        result.stats["sources"][src.name] = {
            "type": src.type,
            **part.stats,
            "records": len(kept),
            "rejected": len(part.rejects),
        }
    return result
