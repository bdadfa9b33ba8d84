"""Run the demo's steps in order and end with the closing report and each step's time."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console
from rich.rule import Rule

from tuneops.cli.demo.state import DemoState
from tuneops.cli.demo.steps import dataset, evaluate, gitops, infra, platform, serve, train

console = Console()

Step = Callable[[DemoState], DemoState]

# Order is the order of the loop.
STEPS: list[tuple[str, Step]] = [
    ("Dataset snapshot", dataset.run),
    ("Local infrastructure (apply ENV=local)", infra.run),
    ("Local platform (PostgreSQL + MLflow server)", platform.run),
    ("Fine-tune", train.run),
    ("Evaluate, register, promote", evaluate.run),
    ("Serve and ask", serve.run),
    ("Render GitOps manifests (dev)", gitops.run),
]


def run_demo(state: DemoState | None = None) -> DemoState:
    state = state or DemoState()
    timings: list[tuple[str, float]] = []
    started = time.perf_counter()
    for index, (title, step) in enumerate(STEPS, 1):
        console.print(Rule(f"[bold]{index}/{len(STEPS)} {title}"))
        t0 = time.perf_counter()
        state = step(state)
        timings.append((title, time.perf_counter() - t0))
    total = time.perf_counter() - started
    console.print(Rule("[bold]Report"))
    for line in state.report:
        console.print(line)
    console.print()
    for title, seconds in timings:
        console.print(f"  {title:<28} {seconds:8.1f} s")
    console.print(f"demo finished in {total:.1f} s")
    return state
