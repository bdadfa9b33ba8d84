"""Trainer callbacks: throughput counters, per-step MLflow metrics, checkpoint markers, progress.

Imports ``transformers`` at the top: import this module only where training happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback

from workloads.data.s3_retry import S3Retry, S3Unavailable
from workloads.train import checkpoints

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """What one process has trained so far, for throughput and the loss curve."""

    examples: int = 0
    tokens: int = 0
    t0: float = field(default_factory=time.perf_counter)
    last_loss: float | None = None
    history: list[tuple[int, float]] = field(default_factory=list)
    eval_history: list[tuple[int, float]] = field(default_factory=list)
    recall_history: list[tuple[int, float]] = field(default_factory=list)

    def restart_clock(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.t0, 1e-9)


class Progress(TrainerCallback):
    """One bar for the whole run: loss, tokens/s and examples/s; rank 0 only."""

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train")

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(
                loss=f"{logs['loss']:.3f}",
                tok_s=f"{logs.get('tokens_per_s', 0):.0f}",
                ex_s=f"{logs.get('examples_per_s', 0):.2f}",
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class Metrics(TrainerCallback):
    """Throughput into the logs; every log line to MLflow; markers on finished saves, then the
    S3 copy (a copy that fails after its retries is one warning line: the checkpoint stays
    local and training goes on)."""

    def __init__(
        self,
        counters: Counters,
        tracker: Any = None,
        checkpoint_uri: str | None = None,
        upload_retry: S3Retry | None = None,
    ):
        self.counters = counters
        self.tracker = tracker
        self.checkpoint_uri = checkpoint_uri
        self.upload_retry = upload_retry

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        counters = self.counters
        elapsed = counters.elapsed()
        world = max(args.world_size, 1)
        if "loss" in logs:
            logs["tokens_per_s"] = counters.tokens * world / elapsed
            logs["examples_per_s"] = counters.examples * world / elapsed
            counters.last_loss = float(logs["loss"])
            counters.history.append((state.global_step, float(logs["loss"])))
        if "eval_loss" in logs:
            counters.eval_history.append((state.global_step, float(logs["eval_loss"])))
        if "eval_key_fact_recall" in logs:
            counters.recall_history.append((state.global_step, float(logs["eval_key_fact_recall"])))
        if state.is_world_process_zero and self.tracker is not None:
            self.tracker.log_metrics(logs, step=state.global_step)

    def on_evaluate(self, args, state, control, **kwargs):
        if state.global_step == 0:  # eval_on_start: throughput counts from here
            self.counters.restart_clock()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            checkpoints.mark_complete(path, state.global_step)
            if self.checkpoint_uri:
                try:
                    checkpoints.upload(path, self.checkpoint_uri, self.upload_retry)
                except S3Unavailable as exc:
                    log.warning("%s; %s stays local only, training goes on", exc, path)


class Threads(TrainerCallback):
    """Sets torch's CPU threads before every step to what ``wanted()`` says (None: as at the
    start). A caller that shares the CPU for a while (the demo, while its infrastructure
    applies) asks for fewer; results do not depend on the count (the numbers are the same)."""

    def __init__(self, wanted: Callable[[], int | None]) -> None:
        import torch

        self.wanted = wanted
        self.default = torch.get_num_threads()

    def on_step_begin(self, args, state, control, **kwargs):
        import torch

        threads = self.wanted() or self.default
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    # Also before the validation loss taken at the start (eval_on_start), which comes before
    # the first step: with every thread while the demo's base-model answers ran beside it,
    # OpenMP's threads waited on each other and that evaluation took 28.7 s instead of about 7.
    on_train_begin = on_step_begin

    def on_train_end(self, args, state, control, **kwargs):
        import torch

        torch.set_num_threads(self.default)


def make_callbacks(
    counters: Counters,
    tracker: Any = None,
    checkpoint_uri: str | None = None,
    threads: Callable[[], int | None] | None = None,
    upload_retry: S3Retry | None = None,
) -> list[TrainerCallback]:
    callbacks = [Metrics(counters, tracker, checkpoint_uri, upload_retry), Progress()]
    return [*callbacks, Threads(threads)] if threads else callbacks
