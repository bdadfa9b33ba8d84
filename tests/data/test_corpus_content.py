"""The embedded corpus and the benchmark, checked through scripts/check_corpus.py.

The first tests hold the shipped files to every rule; the rest plant one fault each and
show that the checks catch it, so a passing run means something."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_corpus.py"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


cc = _load_checker()


@pytest.fixture(scope="module")
def shipped():
    return cc.load_jsonl(cc.CORPUS_PATH), cc.load_jsonl(cc.BENCHMARK_PATH)


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- the shipped files -------------------------------------------------------------------


def test_shipped_files_pass_every_check():
    report = cc.run_checks()
    assert report.problems == []
    assert report.stats["benchmark_total"] >= 130
    assert report.stats["corpus_total"] >= 220
    assert min(report.stats["benchmark_per_category"].values()) >= 20
    assert min(report.stats["corpus_per_category"].values()) >= 35


def test_every_benchmark_item_is_taught_by_some_corpus_answer(shipped):
    corpus, benchmark = shipped
    coverage = cc.check_coverage(corpus, benchmark)
    assert len(coverage) == len(benchmark)
    assert [bid for bid, cids in coverage.items() if not cids] == []


def test_no_corpus_record_shares_eight_words_with_the_benchmark(shipped):
    corpus, benchmark = shipped
    assert cc.find_overlaps(corpus, benchmark) == []


def test_benchmark_difficulties_are_mixed_in_every_category(shipped):
    _, benchmark = shipped
    for category in cc.CATEGORIES:
        levels = {b["difficulty"] for b in benchmark if b["category"] == category}
        assert levels == set(cc.DIFFICULTIES), category


# --- each check catches what it is for ---------------------------------------------------


def test_overlap_finds_a_copied_reference_but_not_a_short_shared_phrase(shipped):
    corpus, benchmark = shipped
    item = benchmark[0]
    copied = {**corpus[0], "id": "cq-9999", "answer": f"In short: {item['reference']}"}
    hits = cc.find_overlaps([copied], benchmark)
    assert any(cid == "cq-9999" and bid == item["id"] for cid, bid, _ in hits)

    seven = " ".join(cc.words(item["reference"])[:7])
    near = {**corpus[0], "id": "cq-9998", "question": "q", "answer": f"zz {seven} zz"}
    assert [h for h in cc.find_overlaps([near], [item]) if h[0] == "cq-9998"] == []


def test_overlap_ignores_case_and_punctuation():
    bench = [
        {
            "id": "bench-0001",
            "question": "Q?",
            "reference": "Run kubectl rollout undo "
            "deployment/api --to-revision=3 now, then verify.",
        }
    ]
    corpus = [
        {
            "id": "cq-0001",
            "question": "How?",
            "answer": "RUN KUBECTL ROLLOUT-UNDO Deployment API to revision 3 NOW!",
        }
    ]
    assert cc.find_overlaps(corpus, bench)


DELETED = object()  # planted by removing the field


@pytest.mark.parametrize(
    ("kind", "field", "value", "message"),
    [
        (
            "benchmark",
            "key_facts",
            ["kubectl", "not in the reference"],
            "'not in the reference' is not in the reference verbatim",
        ),
        ("benchmark", "key_facts", ["one", "a phrase far too long to count"], "must be 1-4 words"),
        ("benchmark", "category", "networking", "category 'networking'"),
        ("benchmark", "difficulty", "trivial", "difficulty 'trivial'"),
        ("benchmark", "reference", "Only one sentence here.", "has 1 sentences; write 2-4"),
        ("benchmark", "question", DELETED, "missing ['question']"),
        ("corpus", "id", "corpus-1", "id 'corpus-1' does not match"),
        ("corpus", "tags", [], "tags must be a list of 1-10 one-line strings"),
        ("corpus", "extra", True, "unexpected ['extra']"),
        ("corpus", "rephrasings", [], "rephrasings must be a list of 1-3 one-line strings"),
        ("corpus", "rephrasings", ["two\nlines"], "rephrasings must be a list of 1-3 one-line"),
        ("corpus", "rephrasings", ["ok?", ""], "rephrasings must be a list of 1-3 one-line"),
        ("corpus", "rephrasings", ["ok?", "ok?"], "rephrasings repeat"),
    ],
)
def test_checks_catch_a_planted_fault(shipped, kind, field, value, message):
    corpus, benchmark = shipped
    records = copy.deepcopy((benchmark if kind == "benchmark" else corpus)[:3])
    if value is DELETED:
        del records[0][field]
    else:
        records[0][field] = value
    check = cc.check_benchmark if kind == "benchmark" else cc.check_corpus
    assert message in "\n".join(check(records).problems)


def test_checks_catch_a_repeated_id_and_too_few_records(shipped):
    corpus, benchmark = shipped
    twins = copy.deepcopy(benchmark[:3])
    twins[2]["id"] = twins[0]["id"]
    assert f"id '{twins[0]['id']}' is used 2 times" in "\n".join(cc.check_benchmark(twins).problems)
    assert "at least 220 are required" in "\n".join(cc.check_corpus(corpus[:3]).problems)


def test_coverage_reports_a_benchmark_item_no_answer_teaches(shipped):
    corpus, benchmark = shipped
    item = {**benchmark[0], "id": "bench-9999", "key_facts": ["zz-unknown-flag", "kubectl"]}
    assert cc.check_coverage(corpus, [item]) == {"bench-9999": []}


def test_near_duplicates_in_the_corpus_are_reported(shipped):
    corpus, _ = shipped
    twin = {**corpus[0], "id": "cq-9999", "question": corpus[0]["question"] + " Thanks!"}
    pairs = cc.find_near_duplicates([corpus[0], twin, corpus[1]])
    assert [(a, b) for a, b, _ in pairs] == [(corpus[0]["id"], "cq-9999")]


def test_sentence_counting_keeps_versions_and_abbreviations_together():
    assert cc.count_sentences("Stable since 1.33, e.g. on EKS. spec.replicas is kept.") == 2
    assert cc.count_sentences("One. Two! Three? Four...") == 4


def test_cli_exit_codes_and_bad_lines(tmp_path, shipped, capsys):
    corpus, benchmark = shipped
    assert cc.main([]) == 0
    assert "0 problems" in capsys.readouterr().out

    # Small slices keep this fast; the counts then fail too, which must not hide the leak.
    leaky = [*corpus[:30], {**corpus[0], "id": "cq-9999", "answer": benchmark[0]["reference"]}]
    corpus_path = _write_jsonl(tmp_path / "corpus.jsonl", leaky)
    bench_path = _write_jsonl(tmp_path / "bench.jsonl", benchmark[:20])
    assert cc.main(["--corpus", str(corpus_path), "--benchmark", str(bench_path)]) == 1
    assert "contamination: corpus cq-9999" in capsys.readouterr().out

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "cq-0001"}\n{not json\n', encoding="utf-8")
    with pytest.raises(cc.CheckError, match=r"bad\.jsonl:2: not valid JSON"):
        cc.load_jsonl(bad)
    assert cc.main(["--corpus", str(bad), "--benchmark", str(bench_path)]) == 2
    assert cc.main(["--corpus", str(tmp_path / "missing.jsonl")]) == 2


def test_a_rephrasing_that_repeats_a_question_or_copies_the_benchmark_is_caught(shipped):
    corpus, benchmark = shipped
    records = copy.deepcopy(corpus[:3])
    records[1]["rephrasings"] = [records[0]["question"]]
    assert "appears 2 times" in "\n".join(cc.check_corpus(records).problems)
    records[1]["rephrasings"] = [benchmark[0]["question"]]
    assert cc.find_overlaps(records, benchmark[:1])
