"""Work the demo does while it waits on something else.

Applying the local infrastructure takes minutes of Terraform against moto and about a third of
one core (69 s of CPU in 214 s, measured alone), so it runs as a process of its own
(``steps/infra.py``) while the fine-tune runs, and the local platform (PostgreSQL and the MLflow
server) is started the moment it ends (``BackgroundJob.after``), still during the fine-tune.
The base model's benchmark answers depend on nothing the steps make (the embedded model, the
benchmark, the decoding settings), so they are computed meanwhile too, by ``tuneops eval`` in
a process of its own at low priority, then its answers to the development questions, and kept
in the evaluation's answer cache
(``workloads/evaluate/answer_cache.py``). The evaluate step waits for that process and then
finds them there; had it failed, the evaluate step computes them itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuneops.core.paths import REPO_ROOT, cache_dir

NICENESS = 10  # below the infrastructure's own processes


@dataclass
class BackgroundJob:
    """One command run beside the demo's steps, its output in a log file."""

    title: str
    command: list[str]
    log: Path
    niceness: int = NICENESS
    threads: int | None = None  # OMP_NUM_THREADS for the job (None: as this process)
    proc: subprocess.Popen | None = None
    started: float = 0.0
    seconds: float | None = None
    returncode: int | None = field(default=None)
    # Started by this job's watcher as soon as this job ends with exit code 0.
    after: BackgroundJob | None = None
    # Set by the watcher once it has dealt with ``after``: ``wait()`` returns only then, so
    # whoever waited for this job finds ``after`` started (or, after a failure, never started).
    watched: threading.Event = field(default_factory=threading.Event)

    def start(self) -> BackgroundJob:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        niceness = self.niceness
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO_ROOT,
                env=env,
                preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
                start_new_session=True,  # its own process group: stop() ends its children too
            )
        self.started = time.perf_counter()
        # Notes the end as it happens: nothing else may look at the job until it is waited for.
        threading.Thread(target=self._watch, name=f"watch {self.title}", daemon=True).start()
        return self

    def _watch(self) -> None:
        code = self.proc.wait()
        self._ended()
        try:
            if code == 0 and self.after is not None:
                self.after.start()
        finally:
            self.watched.set()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def busy(self) -> bool:
        """Running, or ended a moment ago with its follow-up (``after``) not started yet, or
        that follow-up busy: work is still coming from this chain."""
        if self.proc is None:
            return False
        if self.running() or not self.watched.is_set():
            return True
        return self.after is not None and self.after.busy()

    def _ended(self) -> None:
        """Its time, taken when it ended (the watcher), or when waited for if that came first."""
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.started

    def wait(self) -> int | None:
        """Wait for the job; its exit code (None when it was never started)."""
        if self.proc is None:
            return None
        self.returncode = self.proc.wait()
        self._ended()
        self.watched.wait()
        return self.returncode

    def wait_saying(self, say: Callable[[str], object]) -> int | None:
        """``wait()``, first telling ``say`` what is awaited when the job is still running."""
        if self.running():
            say(f"waiting for the {self.title} (log: {self.log})")
        return self.wait()

    def stop(self) -> None:
        """End the job and everything it started (its process group)."""
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def line(self) -> str:
        if self.proc is None:
            return f"{self.title}: not started (the job before it failed)"
        if self.returncode == 0:
            return f"{self.title}: done in the background in {self.seconds:.0f} s"
        return f"{self.title}: failed in the background (exit {self.returncode}); see {self.log}"


def _base_eval(base_ref: str, out: Path, overrides: tuple[str, ...]) -> list[str]:
    command = [sys.executable, "-m", "tuneops.cli", "eval", "--model", base_ref]
    command += ["--split", "benchmark", "--no-log-mlflow", "--output", str(out)]
    for item in ("baselines={}", *overrides):
        command += ["--set", item]
    return command


def base_answers_dir() -> Path:
    return cache_dir() / "demo" / "base-answers"


def base_answers_job(base_ref: str, eval_overrides: tuple[str, ...]) -> BackgroundJob:
    """``tuneops eval`` of the base model alone on the benchmark, as the evaluate step asks it
    (same config and overrides), to fill the answer cache."""
    out = base_answers_dir()
    command = _base_eval(base_ref, out / "benchmark", eval_overrides)
    # One thread: the fine-tune has the other core meanwhile (answers do not depend on it).
    return BackgroundJob("base model's benchmark answers", command, out / "eval.log", threads=1)


def base_dev_answers_job(
    base_ref: str, eval_overrides: tuple[str, ...], dev_questions: str
) -> BackgroundJob:
    """The base model on the development questions (its validation recall,
    ``dev/summary.json``), started when its benchmark answers end (``after``), still beside
    the fine-tune, which keeps to one thread until both are done. Started after the
    fine-tune instead, they ran beside the evaluation's two threads, whose OpenMP threads then
    waited on each other: the candidate's 136 answers took 49.8 s instead of about 29."""
    out = base_answers_dir()
    dev = (*eval_overrides, f"benchmark={dev_questions}", "benchmark_limit=null")
    command = _base_eval(base_ref, out / "dev", dev)
    return BackgroundJob(
        "base model's development answers", command, out / "dev-eval.log", threads=1
    )
