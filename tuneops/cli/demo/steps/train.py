"""Demo steps: fine-tune the embedded model on the snapshot the dataset step built, while the
local infrastructure applies, then write its MLflow run once the tracking server is up.

The fine-tune uses one CPU thread while the base model's answers (benchmark, then development
questions) are computed in the background (they have the other core) and every core after, the
apply's minutes included; the numbers do not depend on the thread count. Nothing goes to MLflow
while it trains (``track_later``): the server needs the bucket the apply creates. ``publish``
writes the whole run afterwards.
"""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState

console = Console()


def _threads(state: DemoState):
    """One thread while the base model's answers are computed beside it, then the default
    (every core): two busy processes on two cores slow each other far more than the share they
    give up (a thread that waits for its core holds up every step). The apply does not count:
    Terraform against moto mostly waits (about a third of one core: 69 s of CPU in 214 s), and
    holding the fine-tune to one thread for the minutes it runs left most of a core idle."""
    job = state.base_answers
    return lambda: 1 if job is not None and job.busy() else None


def run(state: DemoState) -> DemoState:
    from workloads.train.config import load_train_config
    from workloads.train.trainer import run_training, summary_line

    overrides = [f"dataset={state.snapshot}"] if state.snapshot else []
    overrides += [*state.overrides.train, f"tracking.uri={state.tracking}"]
    # The local overlay (configs/train/default.local.yaml): the laptop run's settings.
    config = load_train_config(env="local", overrides=overrides)
    result = run_training(config, track_later=True, threads=_threads(state))
    console.print(summary_line(result))
    recall = result.extra.get("recall_history") or []
    return state.with_report(
        *report_lines(config, result),
        pending_training=result,
        merged_dir=result.merged_dir,
        dev_recall=recall[-1][1] if recall else None,
    )


def publish(state: DemoState) -> DemoState:
    """The fine-tune's MLflow run, written now that the tracking server runs."""
    result = state.pending_training
    if result is None or result.pending is None:
        return state.with_report("fine-tune: nothing to write to MLflow (no fine-tune ran)")
    run_id = result.pending.publish(state.tracking)
    console.print(f"train run id: [bold]{run_id}[/bold] in {state.tracking}")
    return state.with_report(
        f"fine-tune run {run_id} written to MLflow: params, every step's metrics, adapter, "
        "merged model",
        train_run_id=run_id,
        pending_training=None,
    )


def report_lines(config, result) -> list[str]:
    """What the closing report says of the fine-tune: the run, the validation loss and recall
    at every evaluation and the weights kept, and the precision with its reason."""
    layers = f", top {config.lora.top_layers} layers" if config.lora.top_layers else ""
    history = list(result.extra.get("eval_history") or [])
    ended = result.eval_loss_after is not None and result.best_step is None
    if ended and (not history or history[-1][0] != result.global_step):
        history.append((result.global_step, result.eval_loss_after))
    losses = " -> ".join(f"{loss:.3f}" for _, loss in history)
    recall = " -> ".join(f"{r:.3f}" for _, r in result.extra.get("recall_history") or [])
    kept = f"; kept step {result.best_step}" if result.best_step is not None else ""
    lines = [
        f"fine-tune {config.base_model} ({config.method}, r={config.lora.r}{layers}): "
        f"{result.global_step} steps in {result.train_seconds:.0f} s, "
        f"{result.tokens_per_s:.0f} tokens/s",
        f"          validation loss {losses or 'n/a'}{kept}",
    ]
    if recall:
        lines.append(f"          validation key-fact recall (development questions) {recall}")
    lines.append(
        f"          precision {result.extra['precision']} ({result.extra['precision_reason']})"
    )
    return lines
