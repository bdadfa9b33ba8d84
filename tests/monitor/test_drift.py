"""`tuneops monitor drift` on a real snapshot and sampled-prompt logs."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from tuneops.cli import app
from workloads.monitor.config import DriftSection
from workloads.monitor.drift import compare, psi
from workloads.monitor.prompts import load_prompts


def write_log(path, prompts):
    with open(path, "w", encoding="utf-8") as fh:
        for i, prompt in enumerate(prompts):
            fh.write(json.dumps({"ts": 1000 + i, "route": "chat", "prompt": prompt}) + "\n")
    return path


def run_drift(log, snapshot, *extra):
    return CliRunner().invoke(
        app, ["monitor", "drift", "--prompts", str(log), "--dataset", str(snapshot.path), *extra]
    )


def test_similar_prompts_pass(tmp_path, snapshot, cloud_question):
    rng = random.Random(1)
    log = write_log(tmp_path / "p.jsonl", [cloud_question(rng) for _ in range(80)])
    report_path = tmp_path / "report.json"
    result = run_drift(log, snapshot, "--output", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["drifted"] is False and report["prompts"] == 80
    assert all(s["psi"] < 0.2 for s in report["signals"])


def test_shifted_prompts_exit_non_zero(tmp_path, snapshot):
    rng = random.Random(2)
    off_topic = [
        f"please write a long poem about {rng.choice(['the sea', 'autumn', 'a lost cat'])} "
        "with many rhyming verses, a sad ending, and a moral for young children to remember"
        for _ in range(80)
    ]
    log = write_log(tmp_path / "p.jsonl", off_topic)
    result = run_drift(log, snapshot)
    assert result.exit_code == 1, result.output
    assert "drift DETECTED" in result.output


def test_window_keeps_the_most_recent_prompts(tmp_path, snapshot, cloud_question):
    rng = random.Random(3)
    old = ["write a poem about the sea and its rhyming verses"] * 50
    recent = [cloud_question(rng) for _ in range(60)]
    log = write_log(tmp_path / "p.jsonl", old + recent)
    assert load_prompts(str(log), 60) == recent
    assert run_drift(log, snapshot, "--set", "drift.window=60").exit_code == 0
    assert run_drift(log, snapshot, "--set", "drift.window=110").exit_code == 1


def test_too_few_prompts_or_bad_log_is_a_user_error(tmp_path, snapshot):
    log = write_log(tmp_path / "p.jsonl", ["how do I plan terraform?"] * 3)
    result = run_drift(log, snapshot)
    assert result.exit_code != 0 and "at least" in str(result.exception)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    result = run_drift(broken, snapshot)
    assert "line 1 is not JSON" in str(result.exception)


def test_psi_is_zero_for_equal_and_grows_with_shift():
    assert psi([10, 20, 30], [10, 20, 30], 0.5) == pytest.approx(0.0)
    small = psi([12, 20, 28], [10, 20, 30], 0.5)
    large = psi([50, 5, 5], [10, 20, 30], 0.5)
    assert 0 < small < large
    with pytest.raises(Exception, match="at least"):
        compare(["a"], ["b"] * 10, DriftSection(min_prompts=5))
