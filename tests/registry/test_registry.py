"""Register, promote through the gate, roll back: aliases and tags read back with MlflowClient."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneops.core.errors import UserError
from tuneops.core.tracking import use_experiment

GOOD = {"key_fact_recall": 0.50, "rouge_l": 0.30, "chrf": 35.0, "runaway_rate": 0.10}
BASE = {"key_fact_recall": 0.30, "rouge_l": 0.20, "chrf": 30.0, "runaway_rate": 0.20}


def test_register_sets_candidate_alias_tags_and_card(registry_config, client, make_run):
    from workloads.models import resolve_model
    from workloads.registry.registry import register

    run_id = make_run({"candidate": GOOD, "base": BASE})
    reg = register(registry_config, run_id, client=client)

    mv = client.get_model_version_by_alias("cloudops-assistant", "candidate")
    assert str(mv.version) == reg.version == "1"
    assert mv.run_id == run_id
    assert mv.tags["dataset_snapshot"] == "cloudops/20260101T000000Z-abc"
    assert mv.tags["base_model"] == "embedded:smollm2-135m-instruct"
    assert mv.tags["git_commit"] == "0123456789abcdef"
    assert float(mv.tags["eval.benchmark.key_fact_recall"]) == pytest.approx(0.5)
    assert float(mv.tags["eval.base.benchmark.key_fact_recall"]) == pytest.approx(0.3)
    # The model card is attached to the version and logged to the run.
    card = mv.description
    for section in ("## Data", "## Method", "## Metrics", "## Limits"):
        assert section in card
    assert "| key_fact_recall | 0.500 | 0.300 | +0.200 |" in card
    assert "lora.r" in card
    assert "cloudops/20260101T000000Z-abc" in card
    logged = client.download_artifacts(run_id, "model_card/cloudops-assistant-v1.md")
    assert Path(logged).read_text() == card
    # The registered version loads through the shared resolver.
    path = resolve_model("models:/cloudops-assistant@candidate")
    assert (path / "config.json").is_file()


def test_register_refuses_run_without_model(registry_config, client):
    import mlflow

    from workloads.registry.registry import register

    use_experiment("tuneops-train")
    with mlflow.start_run() as run:
        mlflow.log_metric("loss", 1.0)
    with pytest.raises(UserError, match="has no model at 'model'"):
        register(registry_config, run.info.run_id, client=client)
    with pytest.raises(UserError, match="not found"):
        register(registry_config, "0" * 32, client=client)


def test_gate_promotes_better_and_refuses_worse_with_reason(registry_config, client, make_run):
    from workloads.registry.gate import GateRefusedError
    from workloads.registry.registry import promote, register

    # First version: beats the base, no champion yet -> champion.
    v1 = register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    decision = promote(registry_config, client=client)
    assert decision.passed and decision.version == v1.version
    assert str(client.get_model_version_by_alias("cloudops-assistant", "champion").version) == "1"

    # Second version: beats the base but is clearly worse than the champion on ROUGE-L.
    worse = dict(GOOD, rouge_l=0.25)
    run2 = make_run(
        {"candidate": worse, "base": BASE, "champion": GOOD}, versions={"champion": "1"}
    )
    register(registry_config, run2, client=client)
    with pytest.raises(GateRefusedError) as refused:
        promote(registry_config, client=client)
    message = str(refused.value)
    assert "rouge_l" in message and "0.0500 below champion v1" in message
    assert "key_fact_recall" not in message  # only the failing rule is named
    assert refused.value.exit_code == 4
    assert str(client.get_model_version_by_alias("cloudops-assistant", "champion").version) == "1"
    assert client.get_model_version("cloudops-assistant", "2").tags["tuneops.gate"] == "refused"

    # Third version: not enough gain over the base on the primary metric.
    flat = dict(GOOD, key_fact_recall=0.31)
    run3 = make_run({"candidate": flat, "base": BASE, "champion": GOOD}, versions={"champion": "1"})
    register(registry_config, run3, client=client)
    with pytest.raises(GateRefusedError, match=r"key_fact_recall: candidate 0\.3100 vs base"):
        promote(registry_config, client=client)

    # Fourth: better than both -> champion, and v1 keeps `previous`.
    better = dict(GOOD, key_fact_recall=0.55, rouge_l=0.305)
    run4 = make_run(
        {"candidate": better, "base": BASE, "champion": GOOD}, versions={"champion": "1"}
    )
    register(registry_config, run4, client=client)
    decision = promote(registry_config, client=client)
    assert decision.passed and decision.champion == "1"
    assert str(client.get_model_version_by_alias("cloudops-assistant", "champion").version) == "4"
    assert str(client.get_model_version_by_alias("cloudops-assistant", "previous").version) == "1"


def test_gate_needs_scores_comparable_with_the_champion(registry_config, client, make_run):
    from workloads.registry.gate import GateRefusedError
    from workloads.registry.registry import promote, register

    register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    promote(registry_config, client=client)
    # No side-by-side champion scores, but the champion's own eval used the same benchmark:
    # the candidate is compared with those.
    register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
    assert promote(registry_config, client=client).passed
    # Not evaluated at all: refused, naming what to run.
    register(registry_config, make_run({}), client=client)
    with pytest.raises(GateRefusedError, match="tuneops eval --model models:/cloudops-assistant/3"):
        promote(registry_config, client=client)


def test_rollback_restores_previous_and_walks_back(registry_config, client, make_run):
    from workloads.registry.registry import promote, register, rollback

    for _ in range(3):
        register(registry_config, make_run({"candidate": GOOD, "base": BASE}), client=client)
        promote(registry_config, client=client)

    def alias(name: str) -> str:
        return str(client.get_model_version_by_alias("cloudops-assistant", name).version)

    assert (alias("champion"), alias("previous")) == ("3", "2")

    rb = rollback(registry_config, client=client)
    assert (rb.from_version, rb.to_version) == ("3", "2")
    assert (alias("champion"), alias("previous")) == ("2", "1")
    rollback(registry_config, client=client)
    assert alias("champion") == "1"
    with pytest.raises(UserError, match="no 'previous' version"):
        rollback(registry_config, client=client)


def test_cli_exit_codes_and_messages(registry_config, mlflow_uri, make_run, cli):
    run1 = make_run({"candidate": GOOD, "base": BASE})
    code, out, _ = cli("register", "--run-id", run1)
    assert code == 0 and "registered cloudops-assistant v1" in out
    code, out, _ = cli("promote")
    assert code == 0 and "promoted cloudops-assistant v1 to 'champion'" in out

    worse = dict(GOOD, chrf=30.0)
    run2 = make_run(
        {"candidate": worse, "base": BASE, "champion": GOOD}, versions={"champion": "1"}
    )
    assert cli("register", "--run-id", run2)[0] == 0
    code, _, err = cli("promote", "--version", "2")
    assert code == 4
    assert "error: promotion of cloudops-assistant v2 refused: chrf: candidate 30.0000" in err
    assert "5.0000 below champion v1" in err

    code, _, err = cli("rollback")
    assert code == 2 and "error: cloudops-assistant has no 'previous' version" in err
    code, _, err = cli("promote", "--version", "9")
    assert code == 2 and "version 9 does not exist" in err


def test_register_a_transformers_flavour_model(registry_config, client, tiny_model_dir):
    """What training logs (mlflow.transformers, an MLflow logged model named `model`)."""
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workloads.models import resolve_model
    from workloads.registry.registry import register

    use_experiment("tuneops-train")
    with mlflow.start_run() as run:
        mlflow.transformers.log_model(
            transformers_model={
                "model": AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                "tokenizer": AutoTokenizer.from_pretrained(tiny_model_dir),
            },
            name="model",
            task="text-generation",
            pip_requirements=["transformers"],
        )
    reg = register(registry_config, run.info.run_id, client=client)
    assert reg.source.startswith("models:/m-")
    mv = client.get_model_version("cloudops-assistant", reg.version)
    assert mv.run_id == run.info.run_id
    path = resolve_model("models:/cloudops-assistant@candidate")
    assert (path / "config.json").is_file() and (path / "tokenizer_config.json").is_file()
