"""TRL's ``SFTConfig`` for a run: the ``trl:`` section, the typed sections, and the run's facts.

The ``trl:`` section of the training config holds ``SFTConfig`` arguments as they are named
there, and is checked by ``SFTConfig`` itself: an unknown key, a value of the wrong type or one
``SFTConfig`` refuses is one error naming the key. Keys not set there keep the project's
defaults (``PROJECT_DEFAULTS``), then ``SFTConfig``'s own.

The project sets a few arguments itself, so the section refuses them and names where they come
from (``sft_arguments`` is the one place they are written):

- ``SECTION_ARGS``: from the typed sections users already know (``optim``, ``data``, ...),
  which say more than ``SFTConfig``'s names (one batch size for train and eval, ``loss_on``
  instead of a boolean, a checkpoint interval of 0 meaning "only at the end");
- ``RUNTIME_ARGS``: from the run itself (precision, device, world size, its checkpoint folder,
  whether it has a validation split).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import tempfile
import typing
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneops.core.errors import UserError

if TYPE_CHECKING:
    from workloads.train.config import TrainConfig

# The project's choices where SFTConfig's defaults do not fit (also in configs/train/default.yaml).
PROJECT_DEFAULTS: dict[str, Any] = {
    "logging_steps": 1,  # per-step metrics in MLflow and on the progress bar
    "logging_first_step": True,
    "report_to": "none",  # the project logs to MLflow itself
    "disable_tqdm": True,  # the project's own progress bar
    "packing_strategy": "bfd",
    "completion_only_loss": False,  # assistant_only_loss (data.loss_on) decides the mask
    "dataloader_num_workers": 0,
}

SECTION_ARGS: dict[str, str] = {
    "per_device_train_batch_size": "optim.batch_size",
    "per_device_eval_batch_size": "optim.batch_size",
    "gradient_accumulation_steps": "optim.grad_accum",
    "learning_rate": "optim.learning_rate",
    "lr_scheduler_type": "optim.lr_scheduler",
    "warmup_steps": "optim.warmup_ratio",
    "weight_decay": "optim.weight_decay",
    "max_grad_norm": "optim.max_grad_norm",
    "num_train_epochs": "optim.epochs",
    "max_steps": "optim.max_steps",
    "gradient_checkpointing": "gradient_checkpointing",
    "activation_checkpointing": "gradient_checkpointing",
    "seed": "seed",
    "data_seed": "seed",
    "save_strategy": "checkpoint.every_steps",
    "save_steps": "checkpoint.every_steps",
    "save_total_limit": "checkpoint.keep",
    "eval_strategy": "eval.every_steps / eval.every_epoch",
    "eval_steps": "eval.every_steps",
    "load_best_model_at_end": "eval.keep_best",
    "metric_for_best_model": "eval.keep_best",
    "greater_is_better": "eval.keep_best",
    "max_length": "data.max_length",
    "packing": "data.packing",
    "padding_free": "data.packing",
    "assistant_only_loss": "data.loss_on",
    "fsdp": "distributed.strategy",
    "fsdp_config": "distributed.strategy",
}

RUNTIME_ARGS: dict[str, str] = {
    "output_dir": "the run's checkpoints/ folder (output_dir)",
    "bf16": "precision and the hardware",
    "fp16": "precision and the hardware",
    "use_cpu": "whether a CUDA GPU is visible",
    "ddp_backend": "the world size (torchrun)",
    "ddp_find_unused_parameters": "the world size (torchrun)",
    "eval_on_start": "the validation split and --resume",
}

# Variables a distributed launcher sets; hidden while the section is checked, so the check
# never starts a process group (SFTConfig sets up its device when it is built).
LAUNCH_VARS = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
)


@dataclass(frozen=True)
class SFTRuntime:
    """What the run knows only when it starts, and SFTConfig needs."""

    precision: str  # bf16, fp16 or fp32
    cuda: bool
    world: int
    checkpoints_dir: Path
    has_eval: bool
    assistant_only: bool


def sft_arguments(cfg: TrainConfig, run: SFTRuntime) -> dict[str, Any]:
    """The ``SFTConfig`` keyword arguments: the ``trl:`` section, then the typed sections
    (``SECTION_ARGS``), then the run's facts (``RUNTIME_ARGS``)."""
    evals = run.has_eval and (cfg.eval.every_steps > 0 or cfg.eval.every_epoch)
    eval_strategy = ("steps" if cfg.eval.every_steps else "epoch") if evals else "no"
    best = evals and cfg.eval.keep_best != "none"
    args = dict(cfg.trl)
    args.update(
        per_device_train_batch_size=cfg.optim.batch_size,
        per_device_eval_batch_size=cfg.optim.batch_size,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        learning_rate=cfg.optim.learning_rate,
        lr_scheduler_type=cfg.optim.lr_scheduler,
        warmup_steps=cfg.optim.warmup_ratio,  # below 1: a ratio of the total steps
        weight_decay=cfg.optim.weight_decay,
        max_grad_norm=cfg.optim.max_grad_norm,
        num_train_epochs=cfg.optim.epochs,
        max_steps=cfg.optim.max_steps,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        **_save_arguments(cfg, eval_strategy if best else None),
        save_total_limit=cfg.checkpoint.keep,
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval.every_steps if eval_strategy == "steps" else None,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        padding_free=cfg.data.packing,
        assistant_only_loss=run.assistant_only,
    )
    if best:
        recall = cfg.eval.keep_best == "recall"
        args.update(
            load_best_model_at_end=True,
            metric_for_best_model="eval_key_fact_recall" if recall else "eval_loss",
            greater_is_better=recall,
        )
    if cfg.distributed.strategy == "fsdp":
        args["fsdp"] = "full_shard auto_wrap"
        args["fsdp_config"] = {"use_orig_params": True, "activation_checkpointing": False}
    args.update(
        output_dir=str(run.checkpoints_dir),
        bf16=run.precision == "bf16",
        fp16=run.precision == "fp16",
        use_cpu=not run.cuda,
        ddp_backend=("nccl" if run.cuda else "gloo") if run.world > 1 else None,
        ddp_find_unused_parameters=False if run.world > 1 else None,
    )
    return args


def _save_arguments(cfg: TrainConfig, best_strategy: str | None) -> dict[str, Any]:
    """Checkpoints every ``checkpoint.every_steps``; when the best evaluation is kept, at every
    evaluation instead (transformers saves where it evaluates to keep the best)."""
    if best_strategy == "epoch":
        return {"save_strategy": "epoch", "save_steps": 500}
    if best_strategy == "steps":
        return {"save_strategy": "steps", "save_steps": cfg.eval.every_steps}
    save = cfg.checkpoint.every_steps > 0
    return {
        "save_strategy": "steps" if save else "no",
        "save_steps": cfg.checkpoint.every_steps if save else 500,
    }


def build_sft_config(cfg: TrainConfig, run: SFTRuntime):
    """``trl.SFTConfig`` for this run."""
    from trl import SFTConfig

    try:
        return SFTConfig(**sft_arguments(cfg, run))
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot build the TRL arguments for this run: {exc}") from exc


# ---------------------------------------------------------------------------- the check


def check_trl_section(section: dict[str, Any]) -> dict[str, Any]:
    """The section over ``PROJECT_DEFAULTS``, checked key by key and then by ``SFTConfig``.

    Raises ``ValueError`` naming the first bad key (the config loader makes it one line).
    """
    merged = {**PROJECT_DEFAULTS, **section}
    fields = _sft_fields()
    for key, value in merged.items():
        _check_key(key, value, fields)
    failure = _build_error(merged)
    if failure is not None:
        raise ValueError(_name_culprit(merged, failure))
    return merged


@lru_cache(maxsize=1)
def _sft_fields() -> dict[str, Any]:
    """Every ``SFTConfig`` argument with its type (None where the type cannot be read)."""
    from pydantic import TypeAdapter
    from trl import SFTConfig

    try:
        hints = typing.get_type_hints(SFTConfig)
    except Exception:  # a type that cannot be resolved: check names and values only
        hints = {}
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(SFTConfig):
        if not field.init:
            continue
        try:
            fields[field.name] = TypeAdapter(hints[field.name])
        except Exception:  # no type, or one pydantic cannot check
            fields[field.name] = None
    return fields


def _check_key(key: str, value: Any, fields: dict[str, Any]) -> None:
    from pydantic import ValidationError

    if key in SECTION_ARGS:
        raise ValueError(f"trl.{key}: the project sets it from {SECTION_ARGS[key]}; set that")
    if key in RUNTIME_ARGS:
        raise ValueError(f"trl.{key}: the project sets it from {RUNTIME_ARGS[key]}")
    if key not in fields:
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"trl.{key}: not an argument of trl.SFTConfig{hint}")
    adapter = fields[key]
    if adapter is None:
        return
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"]
        raise ValueError(f"trl.{key}={value!r}: {msg} (SFTConfig's type)") from None


def _build_error(arguments: dict[str, Any]) -> str | None:
    """SFTConfig's own complaint about ``arguments`` on this machine's CPU, or None."""
    from trl import SFTConfig

    with _outside_any_launch(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run's own SFTConfig warns, once, where it matters
        try:
            SFTConfig(
                output_dir=str(Path(tempfile.gettempdir()) / "tuneops-trl-check"),
                use_cpu=True,
                **arguments,
            )
        except Exception as exc:  # SFTConfig raises several types for a bad value
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _name_culprit(arguments: dict[str, Any], failure: str) -> str:
    for key, value in arguments.items():
        alone = _build_error({key: value})
        if alone is not None:
            return f"trl.{key}={value!r}: trl.SFTConfig refuses it: {alone}"
    return f"trl ({', '.join(arguments)}): trl.SFTConfig refuses them together: {failure}"


@contextlib.contextmanager
def _outside_any_launch():
    """Build an SFTConfig as a single process would, then restore accelerate's shared state."""
    from accelerate.state import AcceleratorState, PartialState

    hidden = {name: os.environ.pop(name) for name in LAUNCH_VARS if name in os.environ}
    partial, accelerator = dict(PartialState._shared_state), dict(AcceleratorState._shared_state)
    try:
        yield
    finally:
        os.environ.update(hidden)
        for shared, saved in (
            (PartialState._shared_state, partial),
            (AcceleratorState._shared_state, accelerator),
        ):
            shared.clear()
            shared.update(saved)
