"""Run the demo's steps in order and end with the closing report and each step's time."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from tuneops.cli.demo.state import DemoState
from tuneops.cli.demo.steps import dataset, evaluate, gitops, infra, platform, serve, train

console = Console()

Step = Callable[[DemoState], DemoState]

# Order is the order of the loop. The background work starts first: the dataset step keeps
# one core busy, and the apply and the base model's answers use the other meanwhile. Neither
# needs the snapshot.
STEPS: list[tuple[str, Step]] = [
    ("Local infrastructure: moto, then apply ENV=local in the background", infra.start),
    ("Dataset snapshot", dataset.run),
    ("Fine-tune (while the infrastructure applies)", train.run),
    ("Local infrastructure: the apply finishes", infra.finish),
    ("Local platform (PostgreSQL + MLflow server)", platform.run),
    ("Fine-tune: its run written to MLflow", train.publish),
    ("Evaluate, register, promote", evaluate.run),
    ("Serve and ask", serve.run),
    ("Render GitOps manifests (dev)", gitops.run),
    ("Validation recall: the base model's development answers", evaluate.dev_recall),
]


def timing_table(timings: tuple[tuple[str, float], ...], total: float) -> Table:
    """Every step's wall time and its share of the whole run."""
    table = Table(title=f"demo finished in {total:.1f} s", title_justify="left")
    table.add_column("step")
    table.add_column("time (s)", justify="right")
    table.add_column("share", justify="right")
    for title, seconds in timings:
        table.add_row(title, f"{seconds:.1f}", f"{seconds / max(total, 1e-9):.0%}")
    table.add_row("[bold]total", f"[bold]{total:.1f}", "")
    return table


def run_demo(state: DemoState | None = None) -> DemoState:
    state = state or DemoState()
    started = time.perf_counter()
    try:
        for index, (title, step) in enumerate(STEPS, 1):
            console.print(Rule(f"[bold]{index}/{len(STEPS)} {title}"))
            t0 = time.perf_counter()
            state = step(state)
            state = state.with_timing(title, time.perf_counter() - t0)
    finally:
        for job in state.background_jobs:
            job.stop()  # only a failed run leaves one running
    total = time.perf_counter() - started
    console.print(Rule("[bold]Report"))
    for line in state.report:
        console.print(line)
    console.print()
    console.print(timing_table(state.timings, total))
    return state
