"""Answer-quality metrics: per answer, and aggregated over a group of answers.

Scales follow each library's convention: ROUGE-L, exact match, key-fact recall and the rates are
0-1; BLEU and chrF are sacrebleu's 0-100. Aggregate BLEU and chrF are corpus-level scores (the
standard way to report them), not means of sentence scores.

This module is light on purpose (no torch): the registry imports the metric names and
directions from here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

# Metrics where a lower value is better; every other metric is better when higher.
LOWER_IS_BETTER = frozenset(
    {"empty_rate", "runaway_rate", "latency_p50_s", "latency_p95_s", "judge_unparsed_rate"}
)

# Metrics with no better direction (length): deltas are shown without a verdict.
NEUTRAL = frozenset({"count", "answer_tokens", "answer_chars"})

# The order metrics appear in tables.
QUALITY_METRICS = ("key_fact_recall", "rouge_l", "bleu", "chrf", "exact_match", "judge_grade")
AGGREGATE_METRICS = (
    *QUALITY_METRICS,
    "empty_rate",
    "runaway_rate",
    "answer_tokens",
    "answer_chars",
    "latency_p50_s",
    "latency_p95_s",
    "tokens_per_s",
    "judge_unparsed_rate",
)

_WS = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form: casefolded, every whitespace run one space."""
    return _WS.sub(" ", text).strip().casefold()


def exact_match(answer: str, reference: str) -> float:
    """1.0 when the answers are equal ignoring case, whitespace and punctuation at the edges."""
    a = _EDGE_PUNCT.sub("", normalize(answer))
    r = _EDGE_PUNCT.sub("", normalize(reference))
    return 1.0 if a == r and r != "" else 0.0


def facts_found(answer: str, key_facts: Sequence[str]) -> list[bool]:
    """For each key fact: is it present in the answer (case- and whitespace-insensitive)?"""
    text = normalize(answer)
    return [bool(normalize(fact)) and normalize(fact) in text for fact in key_facts]


def key_fact_recall(answer: str, key_facts: Sequence[str]) -> float | None:
    """Share of the key facts present in the answer; None when there are no key facts."""
    if not key_facts:
        return None
    found = facts_found(answer, key_facts)
    return sum(found) / len(found)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence, Porter-stemmed tokens)."""
    return float(_rouge().score(reference, answer)["rougeL"].fmeasure)


def bleu(answer: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(answer, [reference]).score)


def chrf(answer: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(answer, [reference]).score)


def corpus_bleu(answers: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(answers), [list(references)]).score)


def corpus_chrf(answers: Sequence[str], references: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(answers), [list(references)]).score)


def score_answer(answer: str, reference: str, key_facts: Sequence[str] | None) -> dict[str, Any]:
    """Every per-answer quality metric for one answer against its reference."""
    facts = list(key_facts or [])
    return {
        "rouge_l": rouge_l(answer, reference),
        "bleu": bleu(answer, reference),
        "chrf": chrf(answer, reference),
        "exact_match": exact_match(answer, reference),
        "key_fact_recall": key_fact_recall(answer, facts),
        "facts_found": facts_found(answer, facts),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0-100), as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Aggregate per-answer records (see ``runner``) into one row of metrics.

    A metric no record has (key facts on the test split, judge grades when the judge is off) is
    None, never 0.
    """
    if not records:
        return {"count": 0}
    answers = [r["answer"] for r in records]
    references = [r["reference"] for r in records]
    latencies = [r["latency_s"] for r in records]
    tokens = [r["answer_tokens"] for r in records if r.get("answer_tokens") is not None]
    shares = [r["gen_seconds"] for r in records if r.get("answer_tokens") is not None]
    judged = [r for r in records if r.get("judge") is not None]
    row: dict[str, float | None] = {
        "count": float(len(records)),
        "key_fact_recall": _mean(r["metrics"]["key_fact_recall"] for r in records),
        "rouge_l": _mean(r["metrics"]["rouge_l"] for r in records),
        "bleu": corpus_bleu(answers, references),
        "chrf": corpus_chrf(answers, references),
        "exact_match": _mean(r["metrics"]["exact_match"] for r in records),
        "judge_grade": _mean(r["judge"]["grade"] for r in judged) if judged else None,
        "judge_unparsed_rate": (
            sum(r["judge"]["grade"] is None for r in judged) / len(judged) if judged else None
        ),
        "empty_rate": sum(r["empty"] for r in records) / len(records),
        "runaway_rate": sum(r["runaway"] for r in records) / len(records),
        "answer_tokens": _mean(tokens),
        "answer_chars": _mean(len(a) for a in answers),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "tokens_per_s": (sum(tokens) / sum(shares)) if tokens and sum(shares) > 0 else None,
    }
    return row


def aggregate_groups(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"overall": row, "category": {name: row}, "difficulty": {name: row}}``."""
    out: dict[str, Any] = {"overall": aggregate(records), "category": {}, "difficulty": {}}
    for field in ("category", "difficulty"):
        keys = sorted({r.get(field) for r in records if r.get(field)})
        for key in keys:
            out[field][key] = aggregate([r for r in records if r.get(field) == key])
    return out
