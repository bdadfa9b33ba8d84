"""Stage 6, decontaminate: drop records that overlap the evaluation benchmark.

For every benchmark item, the word n-grams of its question and of its reference answer are
indexed. A record's overlap with an item is the share of the item's question n-grams (or of its
reference n-grams, whichever is larger) that also occur in the record. A record whose overlap
with any item reaches ``threshold`` is rejected, naming the item. Texts shorter than ``n`` words
count as one n-gram, so a copied short question is still caught.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from workloads.data.benchmark import load_benchmark
from workloads.data.config import DecontaminateConfig, resolve_path
from workloads.data.records import StageResult, content_text, make_reject

_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class BenchmarkIndex:
    """Inverted index from n-gram to the benchmark parts (item, field) that contain it."""

    def __init__(self, items: list[dict[str, Any]], n: int):
        self.n = n
        self.sizes: dict[tuple[str, str], int] = {}
        self.index: dict[tuple[str, ...], set[tuple[str, str]]] = defaultdict(set)
        for item in items:
            for field in ("question", "reference"):
                grams = ngrams(item[field], n)
                if not grams:
                    continue
                self.sizes[(item["id"], field)] = len(grams)
                for gram in grams:
                    self.index[gram].add((item["id"], field))
        self.short_lengths = sorted({len(g) for g in self.index if len(g) < n})

    def overlap(self, text: str) -> tuple[float, str | None, str | None]:
        """``(score, item id, field)`` of the most overlapped benchmark part."""
        words = _WORD.findall(text.lower())
        hits: dict[tuple[str, str], int] = defaultdict(int)
        grams = set(ngrams(text, self.n))
        # A short benchmark text is one n-gram of fewer than n words: look for it too.
        for length in self.short_lengths:
            grams |= {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}
        for gram in grams:
            for part in self.index.get(gram, ()):
                hits[part] += 1
        if not hits:
            return 0.0, None, None
        part, count = max(hits.items(), key=lambda kv: (kv[1] / self.sizes[kv[0]], kv[0]))
        return count / self.sizes[part], part[0], part[1]


def decontaminate(
    records: list[dict[str, Any]],
    cfg: DecontaminateConfig,
    *,
    benchmark: list[dict[str, Any]] | None = None,
) -> StageResult:
    if not cfg.enabled:
        return StageResult(list(records), [], {"enabled": False})
    if benchmark is None:
        benchmark = load_benchmark(resolve_path(cfg.benchmark) if cfg.benchmark else None)
    index = BenchmarkIndex(benchmark, cfg.ngram)
    result = StageResult([])
    highest = (0.0, None, None)
    for record in records:
        score, item, field = index.overlap(content_text(record))
        if score < cfg.threshold and score > highest[0]:
            highest = (score, record["id"], item)
        if score >= cfg.threshold:
            result.rejects.append(
                make_reject(
                    "decontaminate",
                    record,
                    "benchmark_overlap",
                    f"{score:.0%} of the {field} {cfg.ngram}-grams of benchmark item {item}",
                    benchmark_id=item,
                    overlap=round(score, 3),
                )
            )
        else:
            result.records.append(record)
    result.stats = {
        "benchmark_items": len(benchmark),
        "ngram": cfg.ngram,
        "threshold": cfg.threshold,
        # The closest a kept record came to the benchmark: evidence for the data card.
        "max_kept_overlap": round(highest[0], 3),
        "max_kept_overlap_record": highest[1],
        "max_kept_overlap_item": highest[2],
    }
    return result
