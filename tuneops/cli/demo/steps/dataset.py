"""Demo step: build the default dataset snapshot for the steps after it."""

from __future__ import annotations

from rich.console import Console

from tuneops.cli.demo.state import DemoState

console = Console()


def run(state: DemoState) -> DemoState:
    from workloads.data.config import load_data_config
    from workloads.data.pipeline import build_dataset

    config = load_data_config()
    result = build_dataset(config, progress=True, echo=lambda line: console.print("  " + line))
    snapshot = result.snapshot
    console.print(result.summary())
    acc = snapshot.manifest["accounting"]
    splits = snapshot.manifest["splits"]
    lines = [
        f"dataset   {snapshot.name}/{snapshot.id}: {acc['written']} records "
        f"(train {splits['train']}, validation {splits['validation']}, test {splits['test']}), "
        f"{acc['rejected']} rejected of {acc['in']}"
    ]
    reasons = snapshot.manifest["rejects"]["by_reason"]
    if reasons:
        lines.append("          rejects: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    return state.with_report(*lines, snapshot=snapshot.path)
