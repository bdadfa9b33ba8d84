"""Stage 3, validate: required fields, turn lengths, role order, language, token length.

The token length is measured the way the trainer will see the record: the conversation with the
system prompt that the format stage will give it, rendered by the base model's chat template and
tokenized by the base model's tokenizer. Records over ``max_length`` tokens are rejected rather
than truncated, so no answer is silently cut.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.config import FormattingConfig, ValidationConfig
from workloads.data.formatting import with_system_prompt
from workloads.data.records import StageResult, content_text, make_reject
from workloads.models.resolve import tokenizer_dir

log = logging.getLogger(__name__)

ROLES = {"system", "user", "assistant"}

# A small closed-class word list: enough to tell English prose from other languages or noise
# without a language-identification model (none ships with the pinned set).
_ENGLISH_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "these",
        "those",
        "you",
        "your",
        "we",
        "our",
        "they",
        "their",
        "he",
        "she",
        "his",
        "her",
        "not",
        "no",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "if",
        "then",
        "than",
        "when",
        "what",
        "which",
        "who",
        "how",
        "why",
        "from",
        "by",
        "as",
        "at",
        "into",
        "about",
        "there",
        "here",
        "use",
        "using",
    ]
)


@lru_cache(maxsize=4)
def load_tokenizer(ref: str):
    from transformers import AutoTokenizer

    path = tokenizer_dir(ref)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load a tokenizer from {ref} ({path}): {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"the tokenizer of {ref} has no chat template; pick an instruct model")
    return tokenizer


def render(tokenizer, record: dict[str, Any], formatting: FormattingConfig) -> str:
    if record.get("kind") == "text":
        return record["text"]
    messages = with_system_prompt(record["messages"], formatting)
    return tokenizer.apply_chat_template(messages, tokenize=False)


def token_lengths(
    tokenizer, records: list[dict[str, Any]], formatting: FormattingConfig
) -> list[int]:
    texts = [render(tokenizer, r, formatting) for r in records]
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(x) for x in ids]


def english_ratio(text: str) -> float:
    words = re.findall(r"[a-zA-Z']+", text.lower())
    if not words:
        return 0.0
    return sum(w in _ENGLISH_WORDS for w in words) / len(words)


def structure_problem(record: dict[str, Any], cfg: ValidationConfig) -> tuple[str, str] | None:
    """``(reason, detail)`` for the first problem found, or None."""
    if not record.get("id"):
        return "missing_field", "no id"
    if record.get("kind") == "text":
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            return "missing_field", "no text"
        if len(text) < cfg.min_text_chars:
            return "too_short", f"{len(text)} chars < min_text_chars={cfg.min_text_chars}"
        return None
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return "missing_field", "no messages"
    roles = [m.get("role") for m in messages]
    unknown = sorted({r for r in roles if r not in ROLES})
    if unknown:
        return "bad_role", f"unknown role(s): {', '.join(map(str, unknown))}"
    turns = roles[1:] if roles[0] == "system" else roles
    if "system" in turns:
        return "bad_role_order", "a system turn after the first position"
    if not turns or turns[0] != "user":
        return "bad_role_order", "the conversation must start with a user turn"
    for index, role in enumerate(turns):
        if role != ("user" if index % 2 == 0 else "assistant"):
            return "bad_role_order", f"turn {index + 1} is {role}; user and assistant alternate"
    if turns[-1] != "assistant":
        return "bad_role_order", "the conversation must end with an assistant turn"
    for message in messages:
        if message["role"] == "system":
            continue
        size = len(message.get("content") or "")
        if size < cfg.min_turn_chars:
            return "too_short", f"a {message['role']} turn has {size} chars"
        if size > cfg.max_turn_chars:
            return "too_long", f"a {message['role']} turn has {size} chars"
    return None


def validate(
    records: list[dict[str, Any]],
    cfg: ValidationConfig,
    formatting: FormattingConfig,
    *,
    tokenizer=None,
) -> StageResult:
    result = StageResult([])
    if cfg.language not in (None, "en"):
        raise UserError(f"validation.language {cfg.language!r} is not supported; use en or null")
    structured = []
    for record in records:
        problem = structure_problem(record, cfg)
        if problem is None and cfg.language == "en":
            ratio = english_ratio(content_text(record))
            if ratio < cfg.min_language_ratio:
                problem = ("wrong_language", f"English word ratio {ratio:.2f}")
        if problem:
            result.rejects.append(make_reject("validate", record, *problem))
        else:
            structured.append(record)
    tokenizer = tokenizer or load_tokenizer(cfg.tokenizer)
    lengths = token_lengths(tokenizer, structured, formatting)
    for record, length in zip(structured, lengths, strict=True):
        if length > cfg.max_length:
            result.rejects.append(
                make_reject(
                    "validate",
                    record,
                    "too_many_tokens",
                    f"{length} tokens > max_length={cfg.max_length}",
                    tokens=length,
                )
            )
        else:
            result.records.append(record)
    kept = [n for n in lengths if n <= cfg.max_length]
    result.stats = {
        "tokenizer": cfg.tokenizer,
        "max_length": cfg.max_length,
        "tokens_total": sum(kept),
        "tokens_max": max(kept, default=0),
        "tokens_mean": round(sum(kept) / len(kept), 1) if kept else 0,
    }
    return result
