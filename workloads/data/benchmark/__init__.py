"""The evaluation benchmark: questions with reference answers and key facts.

``cloudops_bench.jsonl`` beside this module holds one item per line::

    {"id", "question", "reference", "key_facts": [2-5 short phrases],
     "category": kubernetes|terraform|helm|gitops|mlops, "difficulty": easy|medium|hard}

It is never trained on: the dataset build decontaminates every training record against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.io import iter_jsonl

BENCHMARK_PATH = Path(__file__).with_name("cloudops_bench.jsonl")
CATEGORIES = ("kubernetes", "terraform", "helm", "gitops", "mlops")
DIFFICULTIES = ("easy", "medium", "hard")


def _problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "expected a JSON object"
    for key in ("id", "question", "reference"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            return f"`{key}` must be a non-empty string"
    facts = item.get("key_facts")
    if not isinstance(facts, list) or not 2 <= len(facts) <= 5:
        return "`key_facts` must be a list of 2 to 5 phrases"
    if not all(isinstance(f, str) and f.strip() for f in facts):
        return "every key fact must be a non-empty string"
    if item.get("category") not in CATEGORIES:
        return f"`category` must be one of {', '.join(CATEGORIES)}"
    if item.get("difficulty") not in DIFFICULTIES:
        return f"`difficulty` must be one of {', '.join(DIFFICULTIES)}"
    return None


def load_benchmark(path: str | Path | None = None) -> list[dict[str, Any]]:
    """Every benchmark item, validated; a bad line is one error naming file and line."""
    path = Path(path) if path else BENCHMARK_PATH
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the benchmark ({exc.strerror})") from exc
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    documents = iter_jsonl(
        lines,
        lambda number, exc: UserError(
            f"{path}:{number}: not valid JSON ({exc.msg}); fix that line"
        ),
    )
    for number, item in documents:
        problem = _problem(item)
        if problem is None and item["id"] in seen:
            problem = f"id {item['id']!r} repeats an earlier item"
        if problem:
            raise UserError(f"{path}:{number}: {problem}; fix that line")
        seen.add(item["id"])
        items.append(item)
    return items
