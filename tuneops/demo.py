"""`make demo`: the whole loop on the embedded default, step by step, with a closing report.

Each area contributes one step: a function ``run(ctx: DemoContext) -> None`` in its ``demo``
module that does its part, records what it produced in ``ctx`` for the steps after it, and adds
lines to the closing report. Steps run in the order of ``STEPS``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.rule import Rule

console = Console()

# (title, "module:function"). Order is the order of the loop.
STEPS: list[tuple[str, str]] = [
    ("Dataset snapshot", "workloads.data.demo:run"),
    ("Local infrastructure (apply ENV=local)", "infra.demo:run"),
    ("Local platform (PostgreSQL + MLflow server)", "infra.local.mlflow_server:demo_step"),
    ("Fine-tune", "workloads.train.demo:run"),
    ("Evaluate, register, promote", "workloads.evaluate.demo:run"),
    ("Serve and ask", "workloads.serve.demo:run"),
    ("Render GitOps manifests (dev)", "workloads.deploy.demo:run"),
]


@dataclass
class DemoContext:
    """State passed from step to step; ``report`` lines are printed at the end."""

    values: dict[str, Any] = field(default_factory=dict)
    report: list[str] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def _load(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def run_demo() -> DemoContext:
    ctx = DemoContext()
    started = time.perf_counter()
    for index, (title, target) in enumerate(STEPS, 1):
        console.print(Rule(f"[bold]{index}/{len(STEPS)} {title}"))
        t0 = time.perf_counter()
        _load(target)(ctx)
        ctx.timings.append((title, time.perf_counter() - t0))
    total = time.perf_counter() - started
    console.print(Rule("[bold]Report"))
    for line in ctx.report:
        console.print(line)
    console.print()
    for title, seconds in ctx.timings:
        console.print(f"  {title:<28} {seconds:8.1f} s")
    console.print(f"demo finished in {total:.1f} s")
    return ctx
