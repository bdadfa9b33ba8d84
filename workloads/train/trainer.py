"""`run_training`: TRL's SFTTrainer with PEFT, plus what they lack.

What is added on top of TRL: the typed config, a training chat template with generation markers
when the model's own has none (``chat_template``), a checkpoint completion marker with an S3
copy and resume from the newest valid checkpoint (``checkpoints``), MLflow logging (params,
config, per-step metrics, the snapshot as an input, loss curve, adapter, merged model;
``tracking``), a rank-agreement check under DDP, a progress bar with throughput
(``callbacks``), and the merged model saved next to the adapter (``export``).

One run goes through phases that hand a ``TrainRun`` to each other: plan (precision, data,
directories, resume point, base model), open the MLflow run, build the trainer (``build``),
fit, save, log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_json
from workloads.models.precision import Precision
from workloads.train.config import TrainConfig
from workloads.train.preflight import preflight, train_precision
from workloads.train.runs import (
    CHECKPOINTS,
    RUN_STATE,
    TrainRun,
    barrier,
    find_resume_point,
    rank_divergence,
    resolve_output,
)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str | None
    run_name: str
    output_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    checkpoints_dir: Path
    global_step: int
    final_loss: float | None
    eval_loss_before: float | None
    eval_loss_after: float | None
    examples_per_s: float
    tokens_per_s: float
    train_seconds: float
    world_size: int = 1
    is_main: bool = True
    resumed_from: str | None = None
    skipped_records: int = 0
    best_step: int | None = None  # with eval.keep_best: the step whose weights were kept
    extra: dict[str, Any] = field(default_factory=dict)
    # With track_later: the MLflow run still to write (track_later.PendingRun).
    pending: Any = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pending"}
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()}


@dataclass
class Fit:
    """What ``trainer.train()`` and the final evaluation measured."""

    seconds: float
    eval_before: float | None
    eval_after: float | None
    divergence: float
    best_step: int | None = None  # the step whose weights were kept (eval.keep_best)
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    recall: list[tuple[int, float]] = field(default_factory=list)  # (step, validation recall)
    frozen: dict[str, int] | None = None  # what the frozen layers' store did (frozen_layers)
    recall_after_merge: bool = False  # the final recall is asked of the merged model


def run_training(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    output: Path | None = None,
    config_source: str | None = None,
    track_later: bool = False,
    threads: Callable[[], int | None] | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on ``cfg.dataset``; see contract 3 for the outputs.

    ``track_later``: nothing goes to MLflow while training; ``result.pending.publish(uri)``
    logs the whole run afterwards (``workloads/train/track_later.py``). Not with ``resume``.
    ``threads``: asked before every step for the CPU threads to use (None: all).
    """
    preflight(cfg)  # before anything heavy is loaded
    if track_later and resume:
        raise UserError("a run tracked later cannot resume: resume needs its MLflow run")

    import torch
    from accelerate import PartialState

    precision = train_precision(cfg)
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        log.info("precision %s: %s", precision.short, precision.reason)
    run = plan_run(cfg, precision, state, resume=resume, output=output)
    run.config_source = config_source
    run.threads = threads
    if run.is_main and track_later:
        from workloads.train.track_later import BufferedTracker

        run.tracker = BufferedTracker()
    elif run.is_main:
        open_tracker(run, resume=resume)
    try:
        result = train(run)
    except BaseException:
        if run.tracker is not None:
            run.tracker.close("FAILED")
        raise
    if run.tracker is not None:
        run.tracker.close()
    if track_later and run.is_main:
        from workloads.train.track_later import PendingRun

        result.pending = PendingRun(run, result, run.tracker)
    return result


def plan_run(
    cfg: TrainConfig, precision: Precision, state, *, resume: bool, output: Path | None
) -> TrainRun:
    """Data, run directory, resume point and base model, decided before the trainer is built."""
    import workloads.models
    from workloads.train.data import open_snapshot, prepare_splits

    snapshot = open_snapshot(cfg.dataset)
    splits = prepare_splits(snapshot, max_eval_examples=cfg.data.max_eval_examples)
    run_name, out_dir = resolve_output(cfg, snapshot.name, resume=resume, output=output)
    remote = f"{cfg.checkpoint.uri.rstrip('/')}/{run_name}" if cfg.checkpoint.uri else None
    resume_from = None
    if resume:
        resume_from = find_resume_point(
            out_dir / CHECKPOINTS, remote, state.is_main_process, cfg.checkpoint.upload_retry
        )
    with state.main_process_first():
        model_dir = workloads.models.resolve_model(cfg.base_model, tracking_uri=cfg.tracking.uri)
    return TrainRun(
        cfg=cfg,
        precision=precision,
        snapshot=snapshot,
        splits=splits,
        model_dir=model_dir,
        run_name=run_name,
        out_dir=out_dir,
        world=state.num_processes,
        is_main=state.is_main_process,
        remote=remote,
        resume_from=resume_from,
    )


def open_tracker(run: TrainRun, *, resume: bool) -> None:
    """Rank 0: the MLflow run (the same one again on resume) and ``run_state.json``."""
    from workloads.train.tracking import Tracker

    previous = run.previous_state()
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.tracker = Tracker(run.cfg, run.run_name, previous.get("run_id") if resume else None)
    atomic_write_json(
        run.out_dir / RUN_STATE,
        {"run_id": run.tracker.run_id, "run_name": run.run_name, "dataset": str(run.snapshot.path)},
    )


def train(run: TrainRun) -> TrainResult:
    """Build the trainer, fit, save the outputs (rank 0), log them, and wait for every rank."""
    from workloads.train import tracking
    from workloads.train.build import build_trainer
    from workloads.train.callbacks import Counters
    from workloads.train.export import save_outputs

    counters = Counters()
    trainer = build_trainer(
        run.cfg,
        run.model_dir,
        run.splits.train,
        run.splits.validation,
        precision=run.precision.short,
        checkpoints_dir=run.ckpt_dir,
        counters=counters,
        tracker=run.tracker,
        checkpoint_uri=run.remote,
        threads=run.threads,
    )
    live = run.tracker is not None and run.tracker.live
    if live:
        tracking.log_run_start(run)
    fit = fit_model(run, trainer, counters)
    if run.is_main:
        save_outputs(run, trainer, counters)
        if fit.recall_after_merge:
            trainer.ask_recall(saved=run.merged_dir)
            fit.recall = list(counters.recall_history)
    result = make_result(run, trainer.state.global_step, counters, fit)
    if live:
        tracking.log_run_end(run, result)
    if run.tracker is not None:
        atomic_write_json(run.out_dir / "result.json", result.to_json())
    barrier()
    return result


def fit_model(run: TrainRun, trainer, counters) -> Fit:
    """``trainer.train()`` (from the resume point), then the validation loss after training."""
    # The validation loss before training comes from eval_on_start, inside train(): evaluating
    # before train() would register the model with accelerate unwrapped, and DDP would then
    # never wrap it (ranks would silently train apart).
    has_eval = bool(run.splits.validation)
    trainer.args.eval_on_start = has_eval and not run.resume_from
    counters.restart_clock()
    try:
        trainer.train(resume_from_checkpoint=run.resume_from)
    except ValueError as exc:
        raise UserError(f"training stopped: {exc}") from exc
    seconds = time.perf_counter() - counters.t0
    prefix = trainer.frozen_prefix
    if prefix is not None:
        log.info(prefix.summary())
    eval_before = counters.eval_history[0][1] if trainer.args.eval_on_start else None
    history = list(counters.eval_history)  # during training; below: the weights kept
    every, trainer.recall_every = trainer.recall_every, False  # in the history already
    eval_after = final_eval_loss(trainer, history) if has_eval else None
    # Once, of the weights kept: of the merged model when the run writes one (rank 0, after
    # the merge), which evaluation then scores too; else of the trained model now.
    once = trainer.recall_probe is not None and not every
    after_merge = once and run.merged_dir is not None
    if once and not after_merge:
        trainer.ask_recall()
    recall = list(counters.recall_history)
    best = trainer.state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
    best_step = int(Path(best).name.rsplit("-", 1)[-1]) if best else None
    divergence = rank_divergence(trainer.model)
    frozen = prefix.stats() if prefix is not None else None
    return Fit(
        seconds,
        eval_before,
        eval_after,
        divergence,
        best_step,
        history,
        recall,
        frozen,
        recall_after_merge=after_merge,
    )


def final_eval_loss(trainer, history: list[tuple[int, float]]) -> float:
    """The validation loss of the weights kept: the evaluation at the last step when there was
    one and those weights are still loaded, else a new evaluation."""
    kept_last = not trainer.args.load_best_model_at_end
    if kept_last and history and history[-1][0] == trainer.state.global_step:
        return history[-1][1]
    return float(trainer.evaluate()["eval_loss"])


def make_result(run: TrainRun, step: int, counters, fit: Fit) -> TrainResult:
    seconds = max(fit.seconds, 1e-9)
    return TrainResult(
        run_id=run.tracker.run_id if run.tracker else None,
        run_name=run.run_name,
        output_dir=run.out_dir,
        adapter_dir=run.adapter_dir,
        merged_dir=run.merged_dir,
        checkpoints_dir=run.ckpt_dir,
        global_step=step,
        final_loss=counters.last_loss,
        eval_loss_before=fit.eval_before,
        eval_loss_after=fit.eval_after,
        examples_per_s=counters.examples * run.world / seconds,
        tokens_per_s=counters.tokens * run.world / seconds,
        train_seconds=fit.seconds,
        world_size=run.world,
        is_main=run.is_main,
        resumed_from=run.resume_from,
        skipped_records=len(run.splits.skipped),
        best_step=fit.best_step,
        extra={
            "eval_history": fit.history,
            "recall_history": fit.recall,
            "frozen_layers": fit.frozen,
            "rank_divergence": fit.divergence,
            "precision": run.precision.short,
            "precision_reason": run.precision.reason,
        },
    )


def summary_line(result: TrainResult) -> str:
    ev = ""
    if result.eval_loss_after is not None:
        before = f"{result.eval_loss_before:.3f} -> " if result.eval_loss_before else ""
        ev = f", val loss {before}{result.eval_loss_after:.3f}"
        if result.best_step is not None:
            ev += f" (the best evaluation, step {result.best_step}, kept)"
    return (
        f"trained {result.run_name}: {result.global_step} steps in {result.train_seconds:.0f} s"
        f" ({result.examples_per_s:.2f} ex/s){ev}; mlflow run {result.run_id}; "
        f"merged model {result.merged_dir}; adapter {result.adapter_dir}{_precision_note(result)}"
    )


def _precision_note(result: TrainResult) -> str:
    """``; precision bf16 (why)`` when the result records the choice."""
    chosen = result.extra.get("precision")
    return f"; precision {chosen} ({result.extra.get('precision_reason')})" if chosen else ""
