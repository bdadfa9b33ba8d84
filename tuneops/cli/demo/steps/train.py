"""Demo step: fine-tune the embedded model on the snapshot the dataset step built."""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState

console = Console()


def run(state: DemoState) -> DemoState:
    from workloads.train.config import load_train_config
    from workloads.train.trainer import run_training, summary_line

    overrides = [f"dataset={state.snapshot}"] if state.snapshot else []
    overrides += [*state.overrides.train, f"tracking.uri={state.tracking}"]
    # The local overlay (configs/train/default.local.yaml): the laptop run's checkpoint interval.
    config = load_train_config(env="local", overrides=overrides)
    result = run_training(config)
    console.print(summary_line(result))
    console.print(f"train run id: [bold]{result.run_id}[/bold]")
    before = f"{result.eval_loss_before:.3f}" if result.eval_loss_before is not None else "n/a"
    after = f"{result.eval_loss_after:.3f}" if result.eval_loss_after is not None else "n/a"
    return state.with_report(
        f"fine-tune {config.base_model} ({config.method}, r={config.lora.r}): "
        f"{result.global_step} steps, val loss {before} -> {after}, "
        f"{result.examples_per_s:.2f} ex/s; run {result.run_id}",
        train_run_id=result.run_id,
        merged_dir=result.merged_dir,
    )
