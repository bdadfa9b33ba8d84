"""Metric functions on known strings."""

from __future__ import annotations

import pytest

from workloads.evaluate import metrics as m


def test_key_fact_recall_is_case_and_whitespace_insensitive():
    answer = "Run  KUBECTL\n describe pod, then kubectl logs."
    facts = ["kubectl describe pod", "kubectl logs", "--previous", "events"]
    assert m.facts_found(answer, facts) == [True, True, False, False]
    assert m.key_fact_recall(answer, facts) == pytest.approx(0.5)
    assert m.key_fact_recall(answer, []) is None
    assert m.key_fact_recall("", ["state"]) == 0.0
    # Substring of a longer word still counts (a fact phrase, not a token); empty facts never do.
    assert m.facts_found("statefulset", ["state", "  "]) == [True, False]


def test_exact_match_ignores_case_space_and_edge_punctuation():
    assert m.exact_match("  Helm Rollback. ", "helm   rollback") == 1.0
    assert m.exact_match("helm rollback now", "helm rollback") == 0.0
    assert m.exact_match("", "") == 0.0


def test_rouge_bleu_chrf_on_known_strings():
    ref = "the cat sat on the mat"
    assert m.rouge_l(ref, ref) == pytest.approx(1.0)
    # LCS 5 of 6 tokens on both sides -> F = 5/6.
    assert m.rouge_l("the cat sat on a mat", ref) == pytest.approx(5 / 6)
    assert m.rouge_l("", ref) == 0.0
    assert m.bleu(ref, ref) == pytest.approx(100.0)
    assert m.chrf(ref, ref) == pytest.approx(100.0)
    assert m.bleu("completely different words here", ref) < 10
    assert 0 < m.chrf("the cat sat", ref) < 100
    assert m.corpus_bleu([ref, "hello"], [ref, "hello there"]) == pytest.approx(86.69, abs=0.01)


def test_percentile_matches_linear_interpolation():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert m.percentile(values, 50) == 3.0
    assert m.percentile(values, 95) == pytest.approx(8.8)
    assert m.percentile([5.0], 95) == 5.0


def _record(answer, reference, facts, category, difficulty, *, finished=True, tokens=10):
    return {
        "answer": answer,
        "reference": reference,
        "category": category,
        "difficulty": difficulty,
        "answer_tokens": tokens,
        "latency_s": 2.0,
        "gen_seconds": 0.5,
        "finished": finished,
        "empty": not answer.strip(),
        "runaway": not finished,
        "metrics": m.score_answer(answer, reference, facts),
        "judge": None,
    }


def test_aggregate_overall_and_groups():
    records = [
        _record(
            "use helm rollback", "helm rollback to a revision", ["helm rollback"], "helm", "easy"
        ),
        _record("", "terraform plan shows changes", ["plan", "changes"], "terraform", "easy"),
        _record(
            "x " * 50, "a remote backend", ["remote backend"], "terraform", "hard", finished=False
        ),
    ]
    groups = m.aggregate_groups(records)
    overall = groups["overall"]
    assert overall["count"] == 3
    assert overall["key_fact_recall"] == pytest.approx(1 / 3)
    assert overall["empty_rate"] == pytest.approx(1 / 3)
    assert overall["runaway_rate"] == pytest.approx(1 / 3)
    assert overall["tokens_per_s"] == pytest.approx(30 / 1.5)
    assert overall["judge_grade"] is None  # no judge: absent, not zero
    assert set(groups["category"]) == {"helm", "terraform"}
    assert groups["category"]["helm"]["key_fact_recall"] == 1.0
    assert groups["difficulty"]["easy"]["count"] == 2
    assert m.higher_is_better("rouge_l") and not m.higher_is_better("runaway_rate")


@pytest.mark.parametrize(
    ("a", "b", "metric", "expected"),
    [
        (0.3, 0.1, "key_fact_recall", "+0.200 ▲"),
        (0.1, 0.3, "key_fact_recall", "-0.200 ▼"),
        (0.1, 0.3, "runaway_rate", "-0.200 ▲"),  # lower is better
        (0.107 + 1e-17, 0.107, "key_fact_recall", "+0.000"),  # float noise: no arrow
        (0.1071, 0.1074, "rouge_l", "-0.000"),  # rounds to zero: no arrow
        (25.0, 23.6, "chrf", "+1.4 ▲"),
        (None, 0.1, "rouge_l", "—"),
    ],
)
def test_comparison_delta_arrows(a, b, metric, expected):
    from workloads.evaluate.report import fmt_delta

    assert fmt_delta(a, b, metric) == expected
