"""The demo's closing report: what each step reported, then every step's time in one table."""

from __future__ import annotations

import io
import time

from rich.console import Console


def test_the_closing_report_times_every_step(monkeypatch):
    from tuneops.cli.demo import runner
    from tuneops.cli.demo.state import DemoState

    def quick(state: DemoState) -> DemoState:
        return state.with_report("quick step done")

    def slow(state: DemoState) -> DemoState:
        time.sleep(0.3)
        return state.with_report("slow step done")

    out = io.StringIO()
    monkeypatch.setattr(runner, "console", Console(file=out, width=120, color_system=None))
    monkeypatch.setattr(runner, "STEPS", [("Quick step", quick), ("Slow step", slow)])
    state = runner.run_demo()

    assert [title for title, _ in state.timings] == ["Quick step", "Slow step"]
    quick_s, slow_s = (seconds for _, seconds in state.timings)
    assert slow_s >= 0.3 > quick_s
    text = out.getvalue()
    report = text[text.index("Report") :]
    assert report.index("quick step done") < report.index("slow step done")
    rows = {line.split("│")[1].strip(): line for line in report.splitlines() if "│" in line}
    assert f"{slow_s:.1f}" in rows["Slow step"] and f"{quick_s:.1f}" in rows["Quick step"]
    assert "total" in rows and "demo finished in" in report


def test_demo_overrides_go_to_their_step_and_bad_ones_are_refused():
    import pytest

    from tuneops.cli.demo.state import StepOverrides
    from tuneops.core.errors import UserError

    parsed = StepOverrides.parse(["train.seed=7", "eval.benchmark_limit=8", "train.optim.epochs=1"])
    assert parsed.train == ("seed=7", "optim.epochs=1")
    assert parsed.eval == ("benchmark_limit=8",) and parsed.registry == ()
    for bad in ("seed=7", "serve.port=1", "train.seed", "train.=3"):
        with pytest.raises(UserError, match=r"STEP\.KEY=VALUE"):
            StepOverrides.parse([bad])


class _Job:
    def __init__(self, running: bool):
        self.is_running = running

    def running(self) -> bool:
        return self.is_running

    busy = running  # no follow-up job here


def test_the_fine_tune_gives_up_a_core_to_the_base_answers_only():
    from tuneops.cli.demo.state import DemoState
    from tuneops.cli.demo.steps.train import _threads

    apply, answers = _Job(True), _Job(True)
    threads = _threads(DemoState(infra_apply=apply, base_answers=answers))
    assert threads() == 1
    answers.is_running = False  # the apply alone mostly waits on moto: every core to training
    assert threads() is None
    assert _threads(DemoState(infra_apply=apply))() is None


def test_the_background_work_starts_before_the_dataset_step():
    """The apply and the base model's answers need no snapshot: they start first, so the
    dataset step's idle core is theirs."""
    from tuneops.cli.demo import runner
    from tuneops.cli.demo.steps import dataset, infra

    steps = [step for _, step in runner.STEPS]
    assert steps.index(infra.start) < steps.index(dataset.run)
