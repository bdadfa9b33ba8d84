"""Stage 4, scrub: secrets and personal data replaced by typed placeholders, each one counted.

| kind | placeholder | what it matches |
| --- | --- | --- |
| ``private_key`` | ``<PRIVATE_KEY>`` | PEM private key blocks (RSA, EC, OpenSSH, PKCS#8, ...) |
| ``aws_access_key`` | ``<AWS_ACCESS_KEY>`` | AWS access key ids (AKIA/ASIA/...) |
| ``aws_secret_key`` | ``<AWS_SECRET_KEY>`` | 40-char secrets assigned to an AWS secret key name |
| ``token`` | ``<TOKEN>`` | bearer tokens; GitHub, Slack, OpenAI, Hugging Face tokens; JWTs; |
| | | values assigned to names like password, api_key, token |
| ``email`` | ``<EMAIL>`` | e-mail addresses (not ``git@host`` remotes) |
| ``ipv4`` | ``<IP_ADDRESS>`` | IPv4 addresses (off by default: cluster CIDRs are useful content) |

Scrubbing never drops a record. The rejects file is scrubbed the same way before it is written,
so a record rejected before this stage does not leak its secrets there.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from workloads.data.config import ScrubConfig
from workloads.data.records import StageResult

_KEYED_NAMES = (
    r"password|passwd|pwd|api[_-]?key|apikey|access[_-]?token|auth[_-]?token|client[_-]?secret"
    r"|secret[_-]?key|private[_-]?token|token"
)

# (kind, placeholder, pattern, group to replace or 0 for the whole match). Order matters:
# whole key blocks first, then specific token shapes, then keyed values, then e-mail.
RULES: list[tuple[str, str, re.Pattern[str], int]] = [
    (
        "private_key",
        "<PRIVATE_KEY>",
        re.compile(
            r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", re.S
        ),
        0,
    ),
    (
        "aws_access_key",
        "<AWS_ACCESS_KEY>",
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b"),
        0,
    ),
    (
        "aws_secret_key",
        "<AWS_SECRET_KEY>",
        re.compile(
            r"(?i)(?:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key)"
            r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
        ),
        1,
    ),
    ("token", "<TOKEN>", re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9\-._~+/]{12,}=*"), 0),
    (
        "token",
        "<TOKEN>",
        re.compile(
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"
            r"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-(?:proj-)?[A-Za-z0-9_-]{20,}"
            r"|hf_[A-Za-z0-9]{30,}|glpat-[A-Za-z0-9_-]{20,}"
            r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
        ),
        0,
    ),
    (
        "token",
        "<TOKEN>",
        re.compile(
            rf"(?i)\b(?:{_KEYED_NAMES})[\"']?\s*[:=]\s*[\"']?"
            r"(?![<$%{])([^\s\"'`,;]{8,})"
        ),
        1,
    ),
    (
        "email",
        "<EMAIL>",
        re.compile(
            r"\b(?!git@)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
        ),
        0,
    ),
    (
        "ipv4",
        "<IP_ADDRESS>",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
        0,
    ),
]

PLACEHOLDERS = {kind: placeholder for kind, placeholder, _, _ in RULES}


def scrub_text(text: str, kinds: list[str] | None = None) -> tuple[str, Counter]:
    """Return the scrubbed text and how many replacements of each kind were made."""
    counts: Counter = Counter()
    enabled = set(kinds if kinds is not None else ScrubConfig().kinds)
    for kind, placeholder, pattern, group in RULES:
        if kind not in enabled:
            continue

        def replace(match: re.Match[str], placeholder=placeholder, group=group, kind=kind) -> str:
            counts[kind] += 1
            if group == 0:
                return placeholder
            whole = match.group(0)
            start = match.start(group) - match.start(0)
            end = match.end(group) - match.start(0)
            return whole[:start] + placeholder + whole[end:]

        text = pattern.sub(replace, text)
    return text, counts


def scrub_value(value: Any, kinds: list[str] | None = None) -> Any:
    """Scrub every string inside a JSON-like value (used for the rejects file)."""
    if isinstance(value, str):
        return scrub_text(value, kinds)[0]
    if isinstance(value, list):
        return [scrub_value(v, kinds) for v in value]
    if isinstance(value, dict):
        return {k: scrub_value(v, kinds) for k, v in value.items()}
    return value


def scrub(records: list[dict[str, Any]], cfg: ScrubConfig) -> StageResult:
    if not cfg.enabled:
        return StageResult(list(records), [], {"enabled": False})
    total: Counter = Counter()
    changed = 0
    out = []
    for record in records:
        before = sum(total.values())
        if record.get("kind") == "text":
            text, counts = scrub_text(record["text"], cfg.kinds)
            total.update(counts)
            new = {**record, "text": text}
        else:
            messages = []
            for message in record["messages"]:
                content, counts = scrub_text(message["content"], cfg.kinds)
                total.update(counts)
                messages.append({**message, "content": content})
            new = {**record, "messages": messages}
        changed += sum(total.values()) > before
        out.append(new)
    stats = {
        "records_changed": changed,
        "replacements": {PLACEHOLDERS[k]: total[k] for k in cfg.kinds if total[k]},
    }
    return StageResult(out, [], stats)
