"""The judge path and endpoint evaluation against the project's own model server on 127.0.0.1
(the real SmolLM2-135M-Instruct behind `tuneops serve`), with a bearer token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BENCH = Path(__file__).parent / "data" / "bench_small.jsonl"
TOKEN = "judge-test-token"


@pytest.fixture(scope="module")
def server(embedded_model_dir):
    from workloads.serve.process import ServerProcess

    with ServerProcess(str(embedded_model_dir), name="judge", token=TOKEN) as proc:
        yield proc


def _counter(server, name: str) -> float:
    import httpx

    text = httpx.get(f"{server.url}/metrics", headers=server.headers, timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.e2e
def test_judge_grades_answers_through_the_model_server(server, tmp_path, mlflow_uri, monkeypatch):
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.runner import run_eval

    monkeypatch.setenv("TUNEOPS_JUDGE_API_KEY", TOKEN)
    monkeypatch.setenv("TUNEOPS_EVAL_API_KEY", TOKEN)
    cfg = load_eval_config(
        overrides=[
            f"benchmark={BENCH}",
            "splits=[benchmark]",
            "benchmark_limit=3",
            "generation.max_new_tokens=16",
            "judge.enabled=true",
            "judge.max_tokens=8",
            f"judge.base_url={server.openai_url}",
            f"tracking.uri={mlflow_uri}",
        ]
    )
    tokens_before = _counter(server, "tuneops_serve_generated_tokens_total")
    # Candidate: answers from the model server itself (an OpenAI-compatible URL); the same
    # server is the judge.
    result = run_eval(
        cfg,
        f"{server.openai_url}#judge",
        {},
        output_dir=tmp_path / "out",
        log_to_mlflow=False,
    )
    assert _counter(server, "tuneops_serve_generated_tokens_total") > tokens_before

    cand = result.candidate
    assert len(cand.records) == 3
    assert all(r["answer_tokens"] and r["answer_tokens"] <= 16 for r in cand.records)
    assert any(r["answer"] for r in cand.records)
    assert result.judge_prompt and re.fullmatch(r"judge_v1@[0-9a-f]{12}", result.judge_prompt)

    graded = [r["judge"] for r in cand.records]
    assert len(graded) == 3
    for judged in graded:
        assert judged["prompt"] == result.judge_prompt
        assert judged["raw"].strip(), "the judge must have replied"
        assert judged["grade"] is None or 1 <= judged["grade"] <= 5
    parsed = [g["grade"] for g in graded if g["grade"] is not None]
    assert parsed, f"no grade parsed from any judge reply: {[g['raw'] for g in graded]}"
    print("judge replies:", [g["raw"] for g in graded])
    overall = cand.overall("benchmark")
    cand_grades = [r["judge"]["grade"] for r in cand.records if r["judge"]["grade"] is not None]
    if cand_grades:
        assert overall["judge_grade"] == pytest.approx(sum(cand_grades) / len(cand_grades))
    unparsed = sum(r["judge"]["grade"] is None for r in cand.records) / 3
    assert overall["judge_unparsed_rate"] == pytest.approx(unparsed)
    assert "judge grade (1-5)" in (tmp_path / "out" / "report.md").read_text()


def test_judge_with_a_wrong_token_is_a_user_error(server, monkeypatch):
    from tuneops.core.errors import UserError
    from workloads.evaluate.config import JudgeConfig
    from workloads.evaluate.judge import Judge

    monkeypatch.setenv("TUNEOPS_JUDGE_API_KEY", "wrong")
    with pytest.raises(UserError, match="cannot list models"):
        Judge(JudgeConfig(enabled=True, base_url=server.openai_url))
