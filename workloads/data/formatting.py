"""Stage 7, format: give every conversation the dataset's system prompt.

The snapshot stores messages, not token ids: the trainer renders them with the base model's chat
template and derives the assistant-only loss mask itself. ``mode`` says what happens to a
conversation that already has a system turn: ``add_if_missing`` keeps it, ``replace`` swaps in
the configured prompt, ``keep`` never adds one.
"""

from __future__ import annotations

from typing import Any

from workloads.data.config import FormattingConfig
from workloads.data.records import StageResult


def with_system_prompt(
    messages: list[dict[str, str]], cfg: FormattingConfig
) -> list[dict[str, str]]:
    if not cfg.system_prompt or cfg.mode == "keep":
        return list(messages)
    has_system = bool(messages) and messages[0]["role"] == "system"
    if has_system and cfg.mode == "add_if_missing":
        return list(messages)
    rest = messages[1:] if has_system else messages
    return [{"role": "system", "content": cfg.system_prompt}, *rest]


def format_records(records: list[dict[str, Any]], cfg: FormattingConfig) -> StageResult:
    out = []
    added = 0
    for record in records:
        if record.get("kind") == "text":
            out.append(record)
            continue
        messages = with_system_prompt(record["messages"], cfg)
        added += messages != record["messages"]
        out.append({**record, "messages": messages})
    return StageResult(out, [], {"system_prompt_set": added})
