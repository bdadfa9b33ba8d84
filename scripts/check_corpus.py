#!/usr/bin/env python3
"""Validate the embedded training corpus and the held-out benchmark (no third-party packages).

Checks, each reported as one line naming the file, the record and what to fix:

- schema: exact field sets, id patterns, types, categories, difficulties, sentence counts;
- counts: a minimum number of records per category, every difficulty used in every category;
- unique ids and unique questions (a corpus item's rephrasings included) within each file;
- benchmark key facts: 2-5 short phrases (1-4 words) found verbatim (case-insensitive) in the
  item's own reference;
- coverage: every benchmark item has at least one corpus answer containing all its key facts
  (the corpus teaches what the benchmark asks);
- contamination: no run of 8 or more consecutive words shared between any corpus item
  (question, rephrasings + answer) and any benchmark item (question + reference), after
  lowercasing and collapsing punctuation and whitespace;
- near-duplicates inside the corpus: Jaccard similarity of the word sets at or above 0.6. The
  dataset pipeline drops records whose estimated word-set Jaccard reaches 0.7 (MinHash, see
  configs/data/default.yaml); the lower bound here leaves room for the estimate's error.

Usage: python scripts/check_corpus.py [--corpus PATH] [--benchmark PATH]
Exit status 0 when clean, 1 when any problem is found, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tuneops.core.io import iter_jsonl  # noqa: E402  (after the repository root is on the path)

CORPUS_PATH = REPO_ROOT / "workloads" / "data" / "corpus" / "troubleshooting_qa.jsonl"
BENCHMARK_PATH = REPO_ROOT / "workloads" / "data" / "benchmark" / "cloudops_bench.jsonl"

CATEGORIES = ("kubernetes", "terraform", "helm", "gitops", "mlops")
DIFFICULTIES = ("easy", "medium", "hard")
BENCHMARK_FIELDS = {"id", "question", "reference", "key_facts", "category", "difficulty"}
CORPUS_FIELDS = {"id", "question", "answer", "category", "tags", "rephrasings"}
TAGS = (1, 10)
REPHRASINGS = (1, 3)  # other wordings of a corpus question, each a training record of its own
BENCHMARK_ID = re.compile(r"^bench-\d{4}$")
CORPUS_ID = re.compile(r"^cq-\d{4}$")

MIN_BENCHMARK_PER_CATEGORY = 20
MIN_BENCHMARK_TOTAL = 130
MIN_CORPUS_PER_CATEGORY = 35
MIN_CORPUS_TOTAL = 220
REFERENCE_SENTENCES = (2, 4)
ANSWER_SENTENCES = (2, 5)
KEY_FACTS = (2, 5)
KEY_FACT_WORDS = (1, 4)
NGRAM = 8
NEAR_DUPLICATE_JACCARD = 0.6
NEAR_DUPLICATE_SHINGLE = 1  # words, as the pipeline's default dedup shingles

# A sentence ends at . ! or ? followed by whitespace, or at the end of the text; an ellipsis and
# the abbreviations e.g., i.e., etc. and vs. do not end one. Dots inside tokens (versions such as
# 1.33, fields such as spec.replicas) are never followed by whitespace, so they do not split.
_SENTENCE_END = re.compile(r"(?<!\.)(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")
_NON_WORD = re.compile(r"[^a-z0-9]+")


class CheckError(Exception):
    """A file that cannot be read or parsed at all."""


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a line that is not a JSON object raises CheckError naming the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckError(f"{path}: cannot read ({exc.strerror})") from exc
    records = []
    lines = iter_jsonl(
        text.splitlines(),
        lambda number, exc: CheckError(f"{path}:{number}: not valid JSON ({exc.msg})"),
    )
    for number, record in lines:
        if not isinstance(record, dict):
            raise CheckError(f"{path}:{number}: expected a JSON object per line")
        records.append(record)
    return records


def count_sentences(text: str) -> int:
    return sum(1 for part in _SENTENCE_END.split(text) if part.strip())


def words(text: str) -> list[str]:
    """Lower-case word tokens with all punctuation and whitespace collapsed."""
    return _NON_WORD.sub(" ", text.lower()).split()


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _label(record: dict, index: int) -> str:
    rid = record.get("id")
    return rid if isinstance(rid, str) and rid else f"record #{index + 1}"


def _check_text(problems, label, record, name, sentences):
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{label}: '{name}' must be a non-empty string")
        return False
    if value != value.strip() or "  " in value or "\n" in value:
        problems.append(f"{label}: '{name}' has stray whitespace; write it on one line")
    if sentences is not None:
        low, high = sentences
        count = count_sentences(value)
        if not low <= count <= high:
            problems.append(f"{label}: '{name}' has {count} sentences; write {low}-{high}")
    return True


def _check_common(problems, label, record, fields, id_pattern, kind):
    keys = set(record)
    if keys != fields:
        missing = sorted(fields - keys)
        extra = sorted(keys - fields)
        problems.append(f"{label}: {kind} fields wrong (missing {missing}, unexpected {extra})")
    rid = record.get("id")
    if not isinstance(rid, str) or not id_pattern.match(rid):
        problems.append(f"{label}: id {rid!r} does not match {id_pattern.pattern}")
    if record.get("category") not in CATEGORIES:
        problems.append(
            f"{label}: category {record.get('category')!r} is not one of {', '.join(CATEGORIES)}"
        )


def _check_unique(problems, records, kind, texts):
    ids = Counter(r.get("id") for r in records)
    for rid, n in sorted(ids.items(), key=lambda kv: str(kv[0])):
        if n > 1:
            problems.append(f"{kind}: id {rid!r} is used {n} times")
    questions = Counter(" ".join(words(q)) for r in records for q in texts(r))
    for question, n in questions.items():
        if n > 1 and question:
            problems.append(f"{kind}: the question {question[:60]!r}... appears {n} times")


def _check_counts(problems, stats, records, kind, per_category, total, difficulties):
    by_category = Counter(r.get("category") for r in records)
    stats[f"{kind}_total"] = len(records)
    stats[f"{kind}_per_category"] = {c: by_category.get(c, 0) for c in CATEGORIES}
    if len(records) < total:
        problems.append(f"{kind}: {len(records)} records; at least {total} are required")
    for category in CATEGORIES:
        if by_category.get(category, 0) < per_category:
            problems.append(
                f"{kind}: {by_category.get(category, 0)} '{category}' records; "
                f"at least {per_category} are required"
            )
    if difficulties:
        grid = Counter((r.get("category"), r.get("difficulty")) for r in records)
        stats[f"{kind}_difficulty"] = {
            c: {d: grid.get((c, d), 0) for d in DIFFICULTIES} for c in CATEGORIES
        }
        for category in CATEGORIES:
            for difficulty in DIFFICULTIES:
                if not grid.get((category, difficulty)):
                    problems.append(f"{kind}: no '{difficulty}' items in '{category}'")


def check_benchmark(records: list[dict]) -> Report:
    """Schema, key facts, uniqueness and balance of the benchmark."""
    report = Report()
    problems = report.problems
    for index, record in enumerate(records):
        label = f"benchmark {_label(record, index)}"
        _check_common(problems, label, record, BENCHMARK_FIELDS, BENCHMARK_ID, "benchmark")
        _check_text(problems, label, record, "question", None)
        has_reference = _check_text(problems, label, record, "reference", REFERENCE_SENTENCES)
        if record.get("difficulty") not in DIFFICULTIES:
            problems.append(
                f"{label}: difficulty {record.get('difficulty')!r} is not one of "
                f"{', '.join(DIFFICULTIES)}"
            )
        facts = record.get("key_facts")
        if not isinstance(facts, list) or not all(isinstance(f, str) and f for f in facts):
            problems.append(f"{label}: key_facts must be a list of non-empty strings")
            continue
        if not KEY_FACTS[0] <= len(facts) <= KEY_FACTS[1]:
            problems.append(f"{label}: {len(facts)} key facts; give {KEY_FACTS[0]}-{KEY_FACTS[1]}")
        if len({f.lower() for f in facts}) != len(facts):
            problems.append(f"{label}: key facts repeat")
        for fact in facts:
            if not KEY_FACT_WORDS[0] <= len(fact.split()) <= KEY_FACT_WORDS[1]:
                problems.append(f"{label}: key fact {fact!r} must be 1-4 words")
            if fact != fact.strip():
                problems.append(f"{label}: key fact {fact!r} has surrounding whitespace")
            if has_reference and fact.lower() not in record["reference"].lower():
                problems.append(f"{label}: key fact {fact!r} is not in the reference verbatim")
    _check_unique(problems, records, "benchmark", lambda r: [str(r.get("question", ""))])
    mins = (MIN_BENCHMARK_PER_CATEGORY, MIN_BENCHMARK_TOTAL)
    _check_counts(problems, report.stats, records, "benchmark", *mins, difficulties=True)
    return report


def check_corpus(records: list[dict]) -> Report:
    """Schema, uniqueness and balance of the training corpus."""
    report = Report()
    problems = report.problems
    for index, record in enumerate(records):
        label = f"corpus {_label(record, index)}"
        _check_common(problems, label, record, CORPUS_FIELDS, CORPUS_ID, "corpus")
        _check_text(problems, label, record, "question", None)
        _check_text(problems, label, record, "answer", ANSWER_SENTENCES)
        _check_list(problems, label, record.get("tags"), "tags", TAGS)
        _check_list(problems, label, record.get("rephrasings"), "rephrasings", REPHRASINGS)
    _check_unique(problems, records, "corpus", corpus_questions)
    mins = (MIN_CORPUS_PER_CATEGORY, MIN_CORPUS_TOTAL)
    _check_counts(problems, report.stats, records, "corpus", *mins, difficulties=False)
    return report


def _check_list(problems, label, value, name, sizes):
    """A list of ``sizes`` distinct, non-empty, one-line strings."""
    low, high = sizes
    if (
        not isinstance(value, list)
        or not low <= len(value) <= high
        or not all(isinstance(v, str) and v.strip() and v == " ".join(v.split()) for v in value)
    ):
        problems.append(f"{label}: {name} must be a list of {low}-{high} one-line strings")
    elif len(set(value)) != len(value):
        problems.append(f"{label}: {name} repeat")


def corpus_questions(record: dict) -> list[str]:
    """The record's question and its other wordings."""
    rephrasings = record.get("rephrasings")
    extra = [str(q) for q in rephrasings] if isinstance(rephrasings, list) else []
    return [str(record.get("question", "")), *extra]


def corpus_text(record: dict) -> str:
    return " ".join([*corpus_questions(record), str(record.get("answer", ""))])


def benchmark_text(record: dict) -> str:
    return f"{record.get('question', '')} {record.get('reference', '')}"


def find_overlaps(
    corpus: list[dict], benchmark: list[dict], n: int = NGRAM
) -> list[tuple[str, str, str]]:
    """(corpus id, benchmark id, one shared n-gram) for every pair sharing any word n-gram."""
    index: dict[tuple[str, ...], list[str]] = {}
    for item in benchmark:
        for gram in ngrams(benchmark_text(item), n):
            index.setdefault(gram, []).append(str(item.get("id")))
    hits: dict[tuple[str, str], str] = {}
    for record in corpus:
        for gram in sorted(ngrams(corpus_text(record), n)):
            for bench_id in index.get(gram, ()):
                hits.setdefault((str(record.get("id")), bench_id), " ".join(gram))
    return [(cid, bid, gram) for (cid, bid), gram in sorted(hits.items())]


def check_coverage(corpus: list[dict], benchmark: list[dict]) -> dict[str, list[str]]:
    """Benchmark id -> corpus ids whose answer holds every one of its key facts."""
    answers = [(str(r.get("id")), str(r.get("answer", "")).lower()) for r in corpus]
    covered = {}
    for item in benchmark:
        facts = [f.lower() for f in item.get("key_facts") or [] if isinstance(f, str)]
        covered[str(item.get("id"))] = [
            cid for cid, answer in answers if facts and all(f in answer for f in facts)
        ]
    return covered


def find_near_duplicates(
    corpus: list[dict],
    threshold: float = NEAR_DUPLICATE_JACCARD,
    shingle: int = NEAR_DUPLICATE_SHINGLE,
) -> list[tuple[str, str, float]]:
    """Corpus pairs whose word-shingle Jaccard similarity is at or above the threshold."""
    shingles = [(str(r.get("id")), ngrams(corpus_text(r), shingle)) for r in corpus]
    pairs = []
    for (id_a, a), (id_b, b) in combinations(shingles, 2):
        if not a or not b:
            continue
        jaccard = len(a & b) / len(a | b)
        if jaccard >= threshold:
            pairs.append((id_a, id_b, round(jaccard, 3)))
    return pairs


def run_checks(corpus_path: Path = CORPUS_PATH, benchmark_path: Path = BENCHMARK_PATH) -> Report:
    """Every check on both files; raises CheckError if a file cannot be read at all."""
    corpus = load_jsonl(corpus_path)
    benchmark = load_jsonl(benchmark_path)
    report = Report()
    for part in (check_benchmark(benchmark), check_corpus(corpus)):
        report.problems.extend(part.problems)
        report.stats.update(part.stats)

    overlaps = find_overlaps(corpus, benchmark)
    report.stats["overlapping_pairs"] = len(overlaps)
    report.problems += [
        f"contamination: corpus {cid} shares {NGRAM} words with benchmark {bid}: '{gram}'"
        for cid, bid, gram in overlaps
    ]

    coverage = check_coverage(corpus, benchmark)
    uncovered = [bid for bid, cids in coverage.items() if not cids]
    report.stats["benchmark_items_covered"] = len(coverage) - len(uncovered)
    report.stats["benchmark_items_covered_twice"] = sum(len(c) >= 2 for c in coverage.values())
    report.problems += [
        f"coverage: no corpus answer contains all key facts of benchmark {bid}" for bid in uncovered
    ]

    duplicates = find_near_duplicates(corpus)
    report.stats["near_duplicate_pairs"] = len(duplicates)
    report.problems += [
        f"near-duplicate: corpus {a} and {b} (word Jaccard {jaccard}); reword one"
        for a, b, jaccard in duplicates
    ]
    return report


def _summary(report: Report) -> str:
    stats = report.stats
    lines = []
    bench = stats.get("benchmark_difficulty", {})
    lines.append(f"{'category':<12}{'bench':>7}{'easy':>6}{'medium':>8}{'hard':>6}{'corpus':>8}")
    for category in CATEGORIES:
        grid = bench.get(category, {})
        lines.append(
            f"{category:<12}{stats.get('benchmark_per_category', {}).get(category, 0):>7}"
            f"{grid.get('easy', 0):>6}{grid.get('medium', 0):>8}{grid.get('hard', 0):>6}"
            f"{stats.get('corpus_per_category', {}).get(category, 0):>8}"
        )
    lines.append(
        f"{'total':<12}{stats.get('benchmark_total', 0):>7}{'':>20}"
        f"{stats.get('corpus_total', 0):>8}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS_PATH)
    parser.add_argument("--benchmark", type=Path, default=BENCHMARK_PATH)
    args = parser.parse_args(argv)
    try:
        report = run_checks(args.corpus, args.benchmark)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(report))
    for problem in report.problems:
        print(f"problem: {problem}")
    stats = report.stats
    print(
        f"{'ok' if report.ok else 'FAILED'}: {stats.get('benchmark_total', 0)} benchmark items, "
        f"{stats.get('corpus_total', 0)} corpus items, "
        f"{stats.get('benchmark_items_covered', 0)} items covered "
        f"({stats.get('benchmark_items_covered_twice', 0)} twice), "
        f"{stats.get('overlapping_pairs', 0)} overlapping pairs, "
        f"{stats.get('near_duplicate_pairs', 0)} near-duplicates, "
        f"{len(report.problems)} problems"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
