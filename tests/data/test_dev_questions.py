"""The development questions: facts the training split teaches, asked in words of their own,
and nothing of the benchmark. Training asks them to measure validation key-fact recall; the
benchmark stays for the promotion gate alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workloads.data.benchmark import load_benchmark
from workloads.data.config import load_data_config
from workloads.data.decontaminate import ngrams
from workloads.data.split import assign

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "workloads" / "data" / "benchmark" / "cloudops_dev.jsonl"
CORPUS = REPO / "workloads" / "data" / "corpus" / "troubleshooting_qa.jsonl"


@pytest.fixture(scope="module")
def dev() -> list[dict]:
    return load_benchmark(DEV)


@pytest.fixture(scope="module")
def corpus() -> dict[str, dict]:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    return {row["id"]: row for row in rows}


def _share(text: str, other: str, n: int = 8) -> float:
    """Share of ``text``'s word n-grams that also occur in ``other``."""
    grams = ngrams(text, n)
    return len(grams & ngrams(other, n)) / len(grams) if grams else 0.0


def test_each_question_probes_one_trained_record_by_its_key_facts(dev, corpus):
    assert len(dev) >= 40
    assert [item["id"] for item in dev] == [f"dev-{n:04d}" for n in range(1, len(dev) + 1)]
    split = load_data_config().split
    for item in dev:
        taught = corpus[item["teaches"]]
        assert item["reference"] == taught["answer"], item["id"]
        assert item["category"] == taught["category"], item["id"]
        for fact in item["key_facts"]:
            assert fact.lower() in item["reference"].lower(), (item["id"], fact)
        # The record is in the training split, so the question asks what training taught.
        assert assign(f"troubleshooting:{taught['id']}", split) == "train", item["id"]
        # ... in other words: not the corpus question again.
        assert _share(item["question"], taught["question"], 4) < 0.5, item["id"]


def test_nothing_of_the_benchmark_is_in_them(dev):
    benchmark = load_benchmark()
    bench_text = " ".join(f"{b['question']} {b['reference']}" for b in benchmark)
    for item in dev:
        assert _share(item["question"], bench_text) == 0.0, item["id"]
    # They ask about facts the benchmark does not: no item's key facts all in one dev answer.
    for b in benchmark:
        for item in dev:
            text = item["reference"].lower()
            assert not all(f.lower() in text for f in b["key_facts"]), (b["id"], item["id"])
