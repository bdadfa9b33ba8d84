"""The demo step end to end with the tiny model: eval, register, and the gate both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneops.core.tracking import use_experiment

BENCH = Path(__file__).parents[1] / "evaluate" / "data" / "bench_small.jsonl"


@pytest.mark.e2e
def test_demo_step_registers_and_promotes_only_through_the_gate(mlflow_uri, tiny_model_dir):
    import mlflow
    from mlflow import MlflowClient

    from tuneops.cli.demo.state import DemoState, StepOverrides
    from tuneops.cli.demo.steps.evaluate import run

    def train_run() -> str:
        mlflow.set_tracking_uri(mlflow_uri)
        use_experiment("tuneops-train")
        with mlflow.start_run() as r:
            mlflow.log_artifacts(str(tiny_model_dir), artifact_path="model")
            mlflow.set_tag("tuneops.method", "lora")
        return r.info.run_id

    def demo(registry_overrides: tuple[str, ...]) -> DemoState:
        overrides = StepOverrides(
            eval=(
                f"benchmark={BENCH}",
                "benchmark_limit=4",
                f"baselines.base={tiny_model_dir}",
                "generation.max_new_tokens=4",
                "generation.dtype=float32",
            ),
            registry=registry_overrides,
        )
        state = DemoState(overrides=overrides, train_run_id=train_run(), tracking_uri=mlflow_uri)
        return run(state)

    # A gate that any model passes: the first candidate becomes champion.
    first = demo(("gate.min_gain_over_base=-1",))
    assert first.promoted is True and first.model_version == "1"
    assert first.eval_report is not None and first.eval_report.is_file()
    assert any("| key-fact recall |" in line for line in first.report)
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias("cloudops-assistant", "champion").version) == "1"

    # The default gate: the same weights do not beat the base by the margin -> refused, and the
    # champion (evaluated side by side this time) stays.
    second = demo(())
    assert second.promoted is False and second.model_version == "2"
    assert "| metric | candidate | base | champion |" in "\n".join(second.report)
    assert any("refused: key_fact_recall" in line for line in second.report)
    assert str(client.get_model_version_by_alias("cloudops-assistant", "champion").version) == "1"


def test_demo_step_without_a_fine_tuned_model_says_so():
    from tuneops.cli.demo.state import DemoState
    from tuneops.cli.demo.steps.evaluate import run

    state = run(DemoState())
    assert state.promoted is False
    assert state.report == (
        "evaluation skipped: no fine-tuned model in this demo (the Fine-tune step sets it)",
    )
