"""Demo step: evaluate the fine-tuned model against the base and the champion on the benchmark,
register it, and promote it only if the gate holds."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tuneops.cli.demo.state import DemoState

console = Console()

SKIPPED = "evaluation skipped: no fine-tuned model in this demo (the Fine-tune step sets it)"


def _candidate(state: DemoState) -> tuple[str, str]:
    """The model ref to evaluate and the run that holds it."""
    if state.train_run_id:
        return f"runs:/{state.train_run_id}/model", state.train_run_id
    # A merged model with no run: give it one, so it can be registered.
    import mlflow

    from tuneops.core.tracking import use_experiment

    use_experiment("tuneops-eval", state.tracking)
    with mlflow.start_run(run_name="demo-candidate") as run:
        mlflow.log_artifacts(str(state.merged_dir), artifact_path="model")
    return f"runs:/{run.info.run_id}/model", run.info.run_id


def _configs(state: DemoState):
    from workloads.evaluate.config import load_eval_config
    from workloads.registry.config import load_registry_config

    reg_cfg = load_registry_config(
        overrides=[f"tracking.uri={state.tracking}", *state.overrides.registry]
    )
    eval_cfg = load_eval_config(
        overrides=[
            "splits=[benchmark]",
            f"tracking.uri={state.tracking}",
            *state.overrides.eval,
        ]
    )
    return reg_cfg, eval_cfg


def _show(result, eval_cfg) -> None:
    from workloads.evaluate.report import comparison_rows, summary_line

    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    header, rows = comparison_rows(result, "benchmark", eval_cfg.report.table_metrics)
    table = Table(*header, title="benchmark: candidate vs baselines")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(summary_line(result, eval_cfg))


def _register_and_promote(reg_cfg, run_id: str):
    from workloads.registry.gate import GateRefusedError
    from workloads.registry.registry import promote, register

    reg = register(reg_cfg, run_id)
    console.print(f"registered {reg.name} v{reg.version} as {reg_cfg.aliases.candidate!r}")
    try:
        decision = promote(reg_cfg, reg.version)
    except GateRefusedError as exc:
        verdict = f"not promoted: {exc}"
        console.print(verdict)
        return reg, False, verdict
    for check in decision.checks:
        console.print(f"  [green]pass[/] {check.message}")
    verdict = f"promoted v{reg.version} to {reg_cfg.aliases.champion!r}"
    console.print(verdict)
    return reg, not decision.already_champion, verdict


def _wait_for_base_answers(state: DemoState) -> list[str]:
    """Wait for the base model's benchmark answers started during the infrastructure step."""
    job = state.base_answers
    if job is None:
        return []
    job.wait_saying(console.print)
    console.print(job.line())
    return [job.line()]


def dev_recall(state: DemoState) -> DemoState:
    """The last step: the base model's validation recall, from the development answers started
    when the fine-tune ended, beside the fine-tuned model's."""
    import json

    from tuneops.cli.demo.background import base_answers_dir

    job = state.base_dev_answers
    if job is None:
        console.print("no development questions were asked (train.eval.recall_questions)")
        return state
    job.wait_saying(console.print)
    lines = [job.line()]
    summary = base_answers_dir() / "dev" / "summary.json"
    if state.dev_recall is not None and job.returncode == 0 and summary.is_file():
        models = json.loads(summary.read_text())["models"]
        base = models["candidate"]["aggregates"]["benchmark"]["overall"]
        lines.append(
            f"validation key-fact recall, {base['count']:.0f} development questions (facts "
            f"the training split teaches, in other words; not the gate): base "
            f"{base['key_fact_recall']:.3f} -> fine-tuned {state.dev_recall:.3f}"
        )
    for line in lines:
        console.print(line)
    return state.with_report(*lines)


def run(state: DemoState) -> DemoState:
    from workloads.evaluate.report import comparison_table
    from workloads.evaluate.runner import run_eval
    from workloads.models.refs import DEFAULT_MODEL, registry_uri

    if not state.train_run_id and not state.merged_dir:
        console.print(f"[yellow]{SKIPPED}[/]")
        return state.with_report(SKIPPED, promoted=False)
    background = _wait_for_base_answers(state)
    reg_cfg, eval_cfg = _configs(state)
    baselines = {
        "base": eval_cfg.baselines.get("base", DEFAULT_MODEL),
        "champion": registry_uri(reg_cfg.name, alias=reg_cfg.aliases.champion),
    }
    model, run_id = _candidate(state)
    result = run_eval(eval_cfg, model, baselines, run_id=run_id)
    _show(result, eval_cfg)
    reg, promoted, verdict = _register_and_promote(reg_cfg, run_id)
    count = result.candidate.overall("benchmark").get("count", 0)
    return state.with_report(
        *background,
        f"Evaluation on the benchmark ({count:.0f} questions), report "
        f"{result.output_dir / 'report.md'}:",
        "",
        comparison_table(result, "benchmark", eval_cfg.report.table_metrics),
        "",
        f"{reg.name} v{reg.version}: {verdict}",
        model_name=reg.name,
        model_version=str(reg.version),
        promoted=promoted,
        eval_report=result.output_dir / "report.md",
    )
