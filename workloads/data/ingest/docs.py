"""A folder of Markdown or text documents, split into sections at headings.

Each section is a text record (``emit_text``) and, with question generation on, the source of
generated question/answer pairs (:mod:`workloads.data.ingest.qgen`).
"""

from __future__ import annotations

import re
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import DocsSource, OnError, resolve_path
from workloads.data.ingest.context import IngestContext, read_text
from workloads.data.records import StageResult, text_record

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
        parts = split_sections(read_text(path), src.max_section_chars)
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
        from workloads.data.ingest.qgen import generate_pairs

        generated = generate_pairs(sections, src.generate, ctx)
        records.extend(generated)
        stats["generated_pairs"] = len(generated)
    if not src.emit_text and not src.generate.enabled:
        for record in sections:
            ctx.drop(record, "not_emitted", "emit_text is off and question generation is off")
    return StageResult(records, ctx.rejects, stats)
