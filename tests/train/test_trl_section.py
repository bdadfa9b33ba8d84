"""The TRL arguments: the ``trl:`` section checked by ``SFTConfig`` itself, merged with the typed
sections and the run's facts into exactly the ``SFTConfig`` the hand-written copy built.

``fixtures/sft_config_reference.json`` was recorded from the hand-written copy of the fields
into ``SFTConfig``, for the default config, the local overlay and the cluster overlays, each with
the intervals changed, under several runtimes: the keyword arguments it passed (every case) and
the ``SFTConfig`` it built (``to_dict()``, where it can be built on a CPU-only machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneops.core.errors import UserError
from workloads.train.config import load_train_config, to_yaml, train_config_from_text
from workloads.train.trl_args import (
    PROJECT_DEFAULTS,
    RUNTIME_ARGS,
    SECTION_ARGS,
    SFTRuntime,
    sft_arguments,
)

REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures" / "sft_config_reference.json").read_text()
)


def _runtime(case: dict) -> SFTRuntime:
    return SFTRuntime(checkpoints_dir=Path("/ckpt"), **case["runtime"])


def _case_id(case: dict) -> str:
    rt, changed = case["runtime"], "+" if case["overrides"] else ""
    return f"{case['env'] or 'default'}{changed}-{rt['precision']}-w{rt['world']}"


@pytest.mark.parametrize("case", REFERENCE, ids=_case_id)
def test_sft_arguments_equal_the_hand_written_copy(case):
    cfg = load_train_config(env=case["env"], overrides=case["overrides"])
    arguments = json.loads(json.dumps(sft_arguments(cfg, _runtime(case))))
    assert arguments == case["kwargs"]


@pytest.mark.parametrize("case", [c for c in REFERENCE if c["built"] is not None], ids=_case_id)
def test_built_sft_config_equals_the_hand_written_one(case):
    from workloads.train.trl_args import build_sft_config

    cfg = load_train_config(env=case["env"], overrides=case["overrides"])
    built = build_sft_config(cfg, _runtime(case)).to_dict()
    assert json.loads(json.dumps(built, default=str)) == case["built"]


def test_the_reference_covers_every_shipped_environment():
    assert {c["env"] for c in REFERENCE} == {None, "local", "dev", "staging", "prod"}


def test_every_argument_the_project_sets_is_named_in_one_table():
    # fsdp and keep_best: every mapped key appears
    cfg = load_train_config(env="prod", overrides=["eval.keep_best=loss"])
    runtime = SFTRuntime("bf16", True, 8, Path("/ckpt"), has_eval=True, assistant_only=True)
    set_by_project = set(sft_arguments(cfg, runtime)) - set(cfg.trl)
    # Refused in the section but set elsewhere: the deprecated alias's new name, and the run
    # loop's eval_on_start.
    assert set_by_project == (set(SECTION_ARGS) | set(RUNTIME_ARGS)) - {
        "activation_checkpointing",
        "eval_on_start",
    }


def test_the_section_keeps_the_project_defaults_and_takes_new_keys():
    assert load_train_config().trl == PROJECT_DEFAULTS
    cfg = load_train_config(overrides=["trl.logging_steps=5", "trl.optim=adamw_torch_fused"])
    assert cfg.trl == {**PROJECT_DEFAULTS, "logging_steps": 5, "optim": "adamw_torch_fused"}
    runtime = SFTRuntime("fp32", False, 1, Path("/ckpt"), has_eval=False, assistant_only=True)
    assert sft_arguments(cfg, runtime)["optim"] == "adamw_torch_fused"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trl.bogus=1", "trl.bogus: not an argument of trl.SFTConfig"),
        ("trl.logging_step=3", "did you mean logging_steps?"),
        (
            "trl.learning_rate=0.1",
            "trl.learning_rate: the project sets it from optim.learning_rate",
        ),
        ("trl.bf16=true", "trl.bf16: the project sets it from precision"),
        ("trl.logging_steps=abc", "trl.logging_steps='abc': Input should be a valid number"),
        ("trl.optim=nope", "trl.optim='nope': trl.SFTConfig refuses it"),
        ("trl.lr_scheduler_kwargs=[1]", "trl.lr_scheduler_kwargs=[1]"),
    ],
)
def test_a_bad_key_or_value_is_one_error_naming_it(override, fragment):
    with pytest.raises(UserError, match="invalid config") as info:
        load_train_config(overrides=[override])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_the_check_leaves_a_distributed_launch_alone(monkeypatch):
    """Checking the section builds an SFTConfig; under torchrun that must not start a process
    group or leave accelerate's state behind for the run to pick up."""
    import torch.distributed as dist
    from accelerate.state import PartialState

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    before = dict(PartialState._shared_state)
    load_train_config(overrides=["trl.logging_steps=2"])
    assert not dist.is_initialized()
    assert dict(PartialState._shared_state) == before


def test_the_serialised_config_reads_back_equal():
    cfg = load_train_config(env="prod", overrides=["trl.logging_steps=4", "lora.r=8"])
    again = train_config_from_text(to_yaml(cfg), source="$TUNEOPS_TRAIN_CONFIG")
    assert again == cfg
    staged = train_config_from_text(to_yaml(cfg), source="x", overrides=["dataset=cloudops/a1"])
    assert staged.dataset == "cloudops/a1"
    with pytest.raises(UserError, match=r"\$V: invalid config: lora.r"):
        train_config_from_text(to_yaml(cfg).replace("r: 8", "r: -1"), source="$V")
