"""Demo step: evaluate the fine-tuned model against the base and the champion on the benchmark,
register it, and promote it only if the gate holds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


def _candidate(ctx, tracking_uri: str) -> tuple[str, str]:
    """The model ref to evaluate and the run that holds it."""
    run_id = ctx.get("train_run_id")
    if run_id:
        return f"runs:/{run_id}/model", run_id
    merged = ctx["merged_dir"]
    # A merged model with no run: give it one, so it can be registered.
    import mlflow

    from tuneops.core.tracking import use_experiment

    use_experiment("tuneops-eval", tracking_uri)
    with mlflow.start_run(run_name="demo-candidate") as run:
        mlflow.log_artifacts(str(merged), artifact_path="model")
    return f"runs:/{run.info.run_id}/model", run.info.run_id


def run(ctx) -> None:
    from tuneops.core.paths import default_tracking_uri
    from workloads.evaluate.config import load_eval_config
    from workloads.evaluate.report import comparison_rows, comparison_table, summary_line
    from workloads.evaluate.runner import run_eval
    from workloads.registry.config import load_registry_config
    from workloads.registry.registry import GateRefusedError, promote, register

    if not ctx.get("train_run_id") and not ctx.get("merged_dir"):
        line = "evaluation skipped: no fine-tuned model in this demo (the Fine-tune step sets it)"
        console.print(f"[yellow]{line}[/]")
        ctx["promoted"] = False
        ctx.report.append(line)
        return
    tracking_uri = ctx.get("tracking_uri") or default_tracking_uri()
    reg_cfg = load_registry_config(
        overrides=[f"tracking_uri={tracking_uri}", *ctx.get("registry_overrides", [])]
    )
    eval_cfg = load_eval_config(
        overrides=[
            "splits=[benchmark]",
            f"tracking.tracking_uri={tracking_uri}",
            *ctx.get("eval_overrides", []),
        ]
    )
    baselines = {
        "base": eval_cfg.baselines.get("base", "embedded:smollm2-135m-instruct"),
        "champion": f"models:/{reg_cfg.name}@{reg_cfg.aliases.champion}",
    }
    model, run_id = _candidate(ctx, tracking_uri)
    result = run_eval(eval_cfg, model, baselines, run_id=run_id)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    header, rows = comparison_rows(result, "benchmark", eval_cfg.report.table_metrics)
    table = Table(*header, title="benchmark: candidate vs baselines")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(summary_line(result, eval_cfg))

    reg = register(reg_cfg, run_id)
    console.print(f"registered {reg.name} v{reg.version} as {reg_cfg.aliases.candidate!r}")
    try:
        decision = promote(reg_cfg, reg.version)
        promoted = not decision.already_champion
        verdict = f"promoted v{reg.version} to {reg_cfg.aliases.champion!r}"
        for check in decision.checks:
            console.print(f"  [green]pass[/] {check.message}")
    except GateRefusedError as exc:
        promoted = False
        verdict = f"not promoted: {exc}"
    console.print(verdict)

    ctx["registered_model"] = reg.name
    ctx["model_version"] = reg.version
    ctx["promoted"] = promoted
    ctx["eval_report"] = str(result.output_dir / "report.md")
    ctx.report += [
        f"Evaluation on the benchmark ({result.candidate.overall('benchmark').get('count', 0):.0f}"
        f" questions), report {result.output_dir / 'report.md'}:",
        "",
        comparison_table(result, "benchmark", eval_cfg.report.table_metrics),
        "",
        f"{reg.name} v{reg.version}: {verdict}",
    ]
