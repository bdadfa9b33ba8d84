"""The questions an evaluation asks: benchmark items and/or the snapshot's test split.

Every item carries the chat prompt to send (with the system message the training data
carries, see ``system_prompt``), its reference answer and, for benchmark items, key facts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.data.benchmark import load_benchmark
from workloads.data.config import load_data_config
from workloads.data.snapshot import load_snapshot
from workloads.evaluate.config import EvalConfig


@dataclass
class Items:
    records: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    benchmark_digest: str | None = None
    system_prompt: str | None = None

    def count(self, split: str) -> int:
        return sum(1 for r in self.records if r["split"] == split)


def system_prompt(config: EvalConfig) -> str | None:
    """The system message for benchmark questions. ``dataset`` means the one the training data
    carries (``formatting.system_prompt`` of the data config), so the candidate is asked the way
    it was trained, and the baselines the same way."""
    value = config.generation.system_prompt
    if value != "dataset":
        return value or None
    return load_data_config().formatting.system_prompt or None


def _prompt(question: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": question}]


def benchmark_items(config: EvalConfig) -> tuple[list[dict[str, Any]], str]:
    """The benchmark questions as items, and a digest of what was asked."""
    rows = load_benchmark(Path(config.benchmark) if config.benchmark else None)
    system = system_prompt(config)
    if config.benchmark_limit:
        rows = rows[: config.benchmark_limit]
    items = []
    for n, row in enumerate(rows, 1):
        missing = [k for k in ("id", "question", "reference") if not row.get(k)]
        if missing:
            raise UserError(f"benchmark record {n} lacks {', '.join(missing)}")
        items.append(
            {
                "id": str(row["id"]),
                "split": "benchmark",
                "question": row["question"],
                "reference": row["reference"],
                "key_facts": list(row.get("key_facts") or []),
                "category": row.get("category"),
                "difficulty": row.get("difficulty"),
                "prompt": _prompt(row["question"], system),
            }
        )
    canonical = json.dumps(
        [[i["id"], i["question"], i["reference"], i["key_facts"]] for i in items],
        ensure_ascii=False,
    )
    return items, hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _test_item(row: dict[str, Any], system: str | None) -> dict[str, Any] | None:
    """A chat record as an item: prompt = every turn before the last answer; None without one."""
    messages = row.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    if row.get("kind") == "text" or last < 1:
        return None
    prompt = [dict(m) for m in messages[:last]]
    if system and prompt[0].get("role") != "system":
        prompt.insert(0, {"role": "system", "content": system})
    question = next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")
    return {
        "id": str(row.get("id")),
        "split": "test",
        "question": question,
        "reference": messages[last]["content"],
        "key_facts": [],
        "category": row.get("category"),
        "difficulty": None,
        "prompt": prompt,
    }


def test_split_items(config: EvalConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat records of the snapshot's test split, and notes on what was skipped."""
    ref = config.test_split.dataset
    try:
        snapshot = load_snapshot(ref)
        rows = snapshot.split("test")
    except (UserError, FileNotFoundError) as exc:
        if config.test_split.required:
            raise UserError(f"test split of dataset {ref!r} unavailable: {exc}") from exc
        return [], [f"test split skipped: dataset {ref!r} unavailable ({exc})"]
    items, text_records = [], 0
    system = system_prompt(config)
    for row in rows:
        item = _test_item(row, system)
        if item is None:
            text_records += 1
            continue
        items.append(item)
        if config.test_split.max_examples and len(items) >= config.test_split.max_examples:
            break
    notes = []
    if text_records:
        notes.append(f"test split: {text_records} records without a question/answer pair skipped")
    notes.append(f"test split: {len(items)} records from snapshot {snapshot.name}/{snapshot.id}")
    return items, notes


def load_items(config: EvalConfig) -> Items:
    items = Items(records=[], system_prompt=system_prompt(config))
    if "benchmark" in config.splits:
        records, digest = benchmark_items(config)
        items.records += records
        items.benchmark_digest = digest
    if "test" in config.splits:
        records, notes = test_split_items(config)
        items.records += records
        items.notes += notes
    if not items.records:
        raise UserError("nothing to evaluate: no benchmark questions and no test records")
    return items
