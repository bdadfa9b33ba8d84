"""Stage 2, normalise: Unicode NFC, whitespace, HTML and quoted e-mail noise; code kept as is.

Text is cut into prose and fenced code blocks (```` ``` ```` / ``~~~``); only prose is touched,
so indentation and markup inside code survive. A record whose content is empty afterwards is
rejected here with reason ``empty_after_normalise``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

from workloads.data.config import NormaliseConfig
from workloads.data.records import StageResult, make_reject

_FENCE_BLOCK = re.compile(r"(^[ \t]*(```|~~~)[^\n]*\n.*?^[ \t]*\2[ \t]*$)", re.M | re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# Only real HTML tags: placeholders like <EMAIL> or generics like List<String> are kept.
_HTML_TAGS = (
    "a|abbr|b|blockquote|br|code|dd|del|details|div|dl|dt|em|font|h[1-6]|hr|i|img|ins|kbd|li|"
    "ol|p|pre|s|samp|small|span|strike|strong|sub|summary|sup|table|tbody|td|th|thead|tr|tt|u|ul"
)
_HTML_TAG = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.I)
_BLOCK_TAG = re.compile(r"</?(?:br|p|div|li|tr|h[1-6]|details|summary|table|ul|ol)\b[^<>]*>", re.I)
_ENTITY = re.compile(r"&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
_WROTE = re.compile(r"^\s*On .{3,200}wrote:\s*$")
_QUOTED = re.compile(r"^\s*>")
_SIGNATURE = re.compile(r"^-- ?$")
_MAIL_FOOTER = re.compile(
    r"^\s*(Sent from my .*|—\s*Reply to this email directly.*|You are receiving this because.*)$",
    re.I,
)


def split_code(text: str) -> list[tuple[bool, str]]:
    """``[(is_code, chunk), ...]`` covering ``text`` in order."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    for match in _FENCE_BLOCK.finditer(text):
        if match.start() > pos:
            parts.append((False, text[pos : match.start()]))
        parts.append((True, match.group(0)))
        pos = match.end()
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


def strip_html(text: str) -> str:
    text = _HTML_COMMENT.sub("", text)
    if _HTML_TAG.search(text):
        text = _BLOCK_TAG.sub("\n", text)
        text = _HTML_TAG.sub("", text)
    if _ENTITY.search(text):
        text = html.unescape(text)
    return text


def strip_quoted_email(text: str) -> str:
    """Drop "On <date>, <someone> wrote:" with the quoted lines after it, signatures, and
    mail-client footers. A Markdown quote not introduced by a "wrote:" line is kept."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if _WROTE.match(line):
            j = i + 1
            while j < len(lines) and (_QUOTED.match(lines[j]) or not lines[j].strip()):
                j += 1
            i = j
            continue
        if _SIGNATURE.match(line):
            break
        if _MAIL_FOOTER.match(line):
            i += 1
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _prose(text: str, cfg: NormaliseConfig) -> str:
    if cfg.strip_html:
        text = strip_html(text)
    if cfg.strip_quoted_email:
        text = strip_quoted_email(text)
    text = text.replace("\t", "    ")
    text = re.sub(r"[ \u00a0\u2000-\u200b\u202f\u3000]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def normalise_text(text: str, cfg: NormaliseConfig | None = None) -> str:
    cfg = cfg or NormaliseConfig()
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    chunks = [chunk if is_code else _prose(chunk, cfg) for is_code, chunk in split_code(text)]
    return re.sub(r"\n{3,}", "\n\n", "".join(chunks)).strip()


def normalise(records: list[dict[str, Any]], cfg: NormaliseConfig) -> StageResult:
    result = StageResult([])
    changed = 0
    for record in records:
        if record.get("kind") == "text":
            text = normalise_text(record["text"], cfg)
            changed += text != record["text"]
            new = {**record, "text": text}
            empty = not text
        else:
            messages = []
            for message in record["messages"]:
                content = normalise_text(message["content"], cfg)
                changed += content != message["content"]
                messages.append({"role": message["role"].strip().lower(), "content": content})
            new = {**record, "messages": messages}
            empty = not any(m["content"] for m in messages if m["role"] != "system")
        if empty:
            result.rejects.append(
                make_reject("normalise", record, "empty_after_normalise", "no content left")
            )
            continue
        result.records.append(new)
    result.stats["fields_changed"] = changed
    return result
