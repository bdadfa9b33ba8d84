"""The base model's answers, computed in the background while the infrastructure applies, are
the ones the evaluate step then reuses; a job that is still running when the demo fails stops."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "evaluate" / "data" / "bench_small.jsonl"
EMBEDDED = "embedded:smollm2-135m-instruct"
OVERRIDES = (
    "splits=[benchmark]",
    f"benchmark={BENCH}",
    "benchmark_limit=2",
    "generation.max_new_tokens=5",
)


@pytest.fixture
def demo_cache(tmp_path, monkeypatch, embedded_model_dir) -> Path:
    """A cache of its own that shares the converted embedded model (``<cache>/models``)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(embedded_model_dir.parents[1], target_is_directory=True)
    monkeypatch.setenv("TUNEOPS_CACHE_DIR", str(cache))
    return cache


@pytest.mark.e2e
def test_the_evaluate_step_reuses_the_answers_made_in_the_background(
    demo_cache, tmp_path, tiny_model_dir
):
    from tuneops.cli.demo.background import base_answers_job
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.runner import run_eval

    job = base_answers_job(EMBEDDED, OVERRIDES).start()
    assert job.running() or job.proc.returncode is not None
    assert job.wait() == 0, job.log.read_text()[-2000:]
    assert job.line().startswith("base model's benchmark answers: done in the background in")
    assert list((demo_cache / "eval" / "answers").glob("*.json"))

    config = load_eval_config(overrides=list(OVERRIDES))
    out = tmp_path / "report"
    result = run_eval(
        config, str(tiny_model_dir), {"base": EMBEDDED}, output_dir=out, log_to_mlflow=False
    )
    assert any(note.startswith("base: answers reused from") for note in result.notes)


def test_a_job_left_running_is_stopped_with_its_children(tmp_path):
    from tuneops.cli.demo.background import BackgroundJob

    child = tmp_path / "child.pid"
    code = f"import os, time; open({str(child)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    script = shlex.join([sys.executable, "-c", code])  # sh starts python: a grandchild
    job = BackgroundJob("sleeper", ["sh", "-c", script], tmp_path / "log").start()
    assert job.running()
    assert os.getpriority(os.PRIO_PROCESS, job.proc.pid) >= 10  # low priority
    for _ in range(100):
        if child.exists() and child.read_text():
            break
        time.sleep(0.1)
    grandchild = int(child.read_text())
    job.stop()
    assert not job.running() and job.proc.returncode is not None
    time.sleep(0.2)
    assert _ended(grandchild)  # the command's own child ended too
    job.wait()
    assert "failed in the background" in job.line()


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_a_jobs_time_is_when_it_ended_not_when_it_was_waited_for(tmp_path):
    from tuneops.cli.demo.background import BackgroundJob

    job = BackgroundJob("quick", ["true"], tmp_path / "log", niceness=0).start()
    time.sleep(1.5)  # the demo looks at it only steps later
    assert job.wait() == 0
    assert job.seconds is not None and job.seconds < 1.0
    assert job.line() == f"quick: done in the background in {job.seconds:.0f} s"


def test_the_next_job_starts_when_the_first_ends_well_and_not_after_a_failure(tmp_path):
    from tuneops.cli.demo.background import BackgroundJob

    first = BackgroundJob("first", ["sh", "-c", "sleep 0.5"], tmp_path / "1.log", niceness=0)
    then = BackgroundJob("then", ["true"], tmp_path / "2.log", niceness=0)
    first.after = then
    first.start()
    assert then.proc is None  # not before the first has ended
    assert first.wait() == 0
    assert then.proc is not None  # whoever waited for the first finds the next one started
    assert then.wait() == 0 and then.started >= first.started + 0.5

    failed = BackgroundJob("failed", ["false"], tmp_path / "3.log", niceness=0)
    never = BackgroundJob("never", ["true"], tmp_path / "4.log", niceness=0)
    failed.after = never
    failed.start()
    assert failed.wait() == 1
    time.sleep(0.3)  # the watcher has seen the end by now
    assert never.proc is None and never.wait() is None


def test_a_chain_is_busy_until_its_last_job_ends(tmp_path):
    """The fine-tune keeps to one thread while ``busy()``: through the first job, the moment
    between it and its follow-up, and the follow-up; not after, nor when nothing started."""
    from tuneops.cli.demo.background import BackgroundJob

    first = BackgroundJob("first", ["sh", "-c", "sleep 0.4"], tmp_path / "1.log", niceness=0)
    then = BackgroundJob("then", ["sh", "-c", "sleep 0.6"], tmp_path / "2.log", niceness=0)
    first.after = then
    assert not first.busy()  # not started
    first.start()
    seen = []
    while first.busy():
        seen.append((first.running(), then.running()))
        time.sleep(0.02)
    assert (True, False) in seen and (False, True) in seen
    assert then.proc is not None and then.proc.poll() == 0  # busy until the last one ended
    assert then.wait() == 0 and then.line().startswith("then: done in the background")

    failed = BackgroundJob("failed", ["false"], tmp_path / "3.log", niceness=0)
    never = BackgroundJob("never", ["true"], tmp_path / "4.log", niceness=0)
    failed.after = never
    failed.start()
    failed.wait()
    assert not failed.busy()
    assert never.line() == "never: not started (the job before it failed)"
