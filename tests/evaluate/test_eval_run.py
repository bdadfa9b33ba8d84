"""A whole evaluation with the tiny model: generation, scores, report files, MLflow logging."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tuneops.core.tracking import use_experiment

BENCH = Path(__file__).parent / "data" / "bench_small.jsonl"


@pytest.fixture
def snapshot_dir(tmp_path) -> Path:
    """A dataset snapshot (contract 1) with three chat records and one text record in test."""
    snap = tmp_path / "datasets" / "cloudops" / "abc123"
    snap.mkdir(parents=True)
    chat = [
        {
            "id": f"t{i}",
            "kind": "chat",
            "source": "fixture",
            "category": "kubernetes",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"How many replicas in example {i}?"},
                {"role": "assistant", "content": f"Example {i} runs {i} replicas."},
            ],
        }
        for i in range(3)
    ]
    text = {"id": "x", "kind": "text", "source": "fixture", "text": "plain text"}
    lines = [json.dumps(r) for r in [*chat, text]]
    (snap / "test.jsonl").write_text("\n".join(lines) + "\n")
    for split in ("train", "validation"):
        (snap / f"{split}.jsonl").write_text("")
    (snap / "manifest.json").write_text(json.dumps({"snapshot_id": "abc123", "name": "cloudops"}))
    return snap


@pytest.fixture
def candidate_run(mlflow_uri, tiny_model_dir) -> str:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    use_experiment("tuneops-train")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(tiny_model_dir), artifact_path="model")
    return run.info.run_id


def test_eval_scores_reports_and_logs_to_the_candidate_run(
    tmp_path, mlflow_uri, tiny_model_dir, snapshot_dir, candidate_run
):
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.runner import run_eval

    budget = 6
    cfg = load_eval_config(
        overrides=[
            f"benchmark={BENCH}",
            f"test_split.dataset={snapshot_dir}",
            f"generation.max_new_tokens={budget}",
            "generation.batch_size=4",
            "generation.dtype=float32",
            f"tracking.uri={mlflow_uri}",
        ]
    )
    baselines = {"base": str(tiny_model_dir), "champion": "models:/cloudops-assistant@champion"}
    out = tmp_path / "report"
    result = run_eval(cfg, f"runs:/{candidate_run}/model", baselines, output_dir=out)

    # The champion does not exist yet: skipped, and said so.
    assert [m.label for m in result.models] == ["candidate", "base"]
    assert any("baseline champion skipped" in n for n in result.notes)
    assert any("1 records without a question/answer pair skipped" in n for n in result.notes)
    assert result.run_id == candidate_run
    assert result.splits == ["benchmark", "test"]
    _check_answers_and_scores(result, budget)
    _check_report_files(out)
    _check_candidate_run(mlflow_uri, candidate_run, result, tiny_model_dir)


def _check_answers_and_scores(result, budget: int) -> None:
    cand = result.candidate
    assert len(cand.records) == 8 + 3
    for rec in cand.records:
        assert rec["answer_tokens"] <= budget
        assert rec["runaway"] == (not rec["finished"])
        if rec["runaway"]:
            assert rec["answer_tokens"] == budget
    # Greedy decoding is fixed: the same weights give the same answers.
    assert [r["answer"] for r in cand.records] == [r["answer"] for r in result.baselines[0].records]
    bench = cand.aggregates["benchmark"]
    assert bench["overall"]["count"] == 8
    assert set(bench["category"]) == {"kubernetes", "terraform", "helm", "gitops", "mlops"}
    assert set(bench["difficulty"]) == {"easy", "medium", "hard"}
    assert bench["overall"]["key_fact_recall"] is not None
    assert cand.aggregates["test"]["overall"]["key_fact_recall"] is None  # no key facts there
    assert cand.aggregates["test"]["overall"]["count"] == 3
    # The test split keeps its own system turn and drops the reference answer from the prompt.
    test_rec = next(r for r in cand.records if r["split"] == "test")
    assert test_rec["reference"].startswith("Example")
    # The dtype the answers were computed in, and why, is stated.
    assert cand.dtype == "float32" and "as configured" in cand.precision_reason


def _check_report_files(out: Path) -> None:
    report = (out / "report.md").read_text()
    assert "| metric | candidate | base | Δ vs base |" in report
    assert "per category" in report and "worst candidate answers" in report
    assert "- precision: float32 (float32 as configured (" in report
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    answers = (out / "answers" / "candidate.jsonl").read_text().splitlines()
    assert len(answers) == 11
    summary = json.loads((out / "summary.json").read_text())
    assert summary["models"]["base"]["aggregates"]["benchmark"]["overall"]["count"] == 8
    assert summary["models"]["candidate"]["dtype"] == "float32"


def _check_candidate_run(mlflow_uri: str, run_id: str, result, tiny_model_dir: Path) -> None:
    """Everything is on the candidate's run."""
    from mlflow import MlflowClient

    run = MlflowClient(mlflow_uri).get_run(run_id)
    metrics = run.data.metrics
    assert metrics["eval.candidate.benchmark.count"] == 8
    assert "eval.base.benchmark.rouge_l" in metrics
    assert "eval.candidate.benchmark.category.helm.key_fact_recall" in metrics
    assert "eval.candidate.test.chrf" in metrics
    assert run.data.tags["tuneops.eval.benchmark_digest"] == result.benchmark_digest
    assert run.data.tags["tuneops.eval.base.ref"] == str(tiny_model_dir)
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(run_id, "eval")}
    assert {"eval/report.md", "eval/comparison.png", "eval/summary.json"} <= artifacts


def test_eval_cli_bad_input_is_one_line(monkeypatch, capsys, mlflow_uri):
    from tuneops.cli import main

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["tuneops", "eval", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        return exc.value.code, capsys.readouterr().err

    code, err = run(
        "--model", "./no/such/model", "--split", "benchmark", "--set", f"benchmark={BENCH}"
    )
    assert code == 2 and "error: model path ./no/such/model does not exist" in err
    code, err = run("--model", "embedded:smollm2-135m-instruct", "--set", "generation.batch_size=0")
    assert code == 2 and "generation.batch_size" in err
    code, err = run("--model", "x", "--split", "benchmark", "--set", "benchmark=/nope.jsonl")
    assert code == 2 and "nope.jsonl" in err
