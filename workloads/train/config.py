"""Typed training configuration (``configs/train/default.yaml`` plus overlays and overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from tuneops.core.config import StrictModel, apply_overrides, load_config, validate
from tuneops.core.errors import UserError
from tuneops.core.paths import CONFIG_DIR
from tuneops.core.tracking import TrackingConfig
from workloads.data.s3_retry import S3Retry
from workloads.models.refs import DEFAULT_MODEL
from workloads.train.metric_outbox import MetricRetry
from workloads.train.trl_args import PROJECT_DEFAULTS, check_trl_section

DEFAULT_CONFIG = CONFIG_DIR / "train" / "default.yaml"


class LoraConfig(StrictModel):
    r: int = Field(16, gt=0, le=1024)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )
    # Adapters on the last N decoder layers only (None: every layer); the layers below are
    # frozen and their output per row is computed once (workloads/train/frozen_layers.py).
    top_layers: int | None = Field(None, gt=0)
    # Memory for those stored outputs (0: recompute them at every visit).
    frozen_cache_mb: int = Field(1024, ge=0)


class DataConfig(StrictModel):
    max_length: int = Field(512, ge=32)
    packing: bool = True
    loss_on: Literal["assistant", "all"] = "assistant"
    max_eval_examples: int | None = Field(64, gt=0)


class OptimConfig(StrictModel):
    learning_rate: float = Field(4e-4, gt=0, lt=1)
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    epochs: float = Field(1, gt=0)
    max_steps: int = -1
    batch_size: int = Field(2, ge=1)
    grad_accum: int = Field(1, ge=1)

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be a positive number of steps, or -1 to use epochs")
        return value


class CheckpointConfig(StrictModel):
    every_steps: int = Field(25, ge=0)
    keep: int = Field(2, ge=1)
    uri: str | None = None
    # Tries and timeouts of the S3 copy (workloads/data/s3_retry.py).
    upload_retry: S3Retry = Field(default_factory=S3Retry)

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value and "://" in value and not value.startswith("s3://"):
            raise ValueError("must be s3://bucket/prefix or empty (checkpoints stay local)")
        if value and value.startswith("s3://") and not value[5:].split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket name")
        return value or None


class EvalConfig(StrictModel):
    # Validation loss every N optimizer steps (0: not by steps; over every_epoch when set).
    every_steps: int = Field(0, ge=0)
    # Validation loss at the end of every epoch (when every_steps is 0).
    every_epoch: bool = False
    # Development questions (benchmark format) scored by key-fact recall
    # (workloads/train/recall.py); None: not asked. recall_at: end (once, after training) or
    # every (at every evaluation, the start included).
    recall_questions: str | None = None
    recall_limit: int | None = Field(None, gt=0)
    recall_at: Literal["end", "every"] = "end"
    # Keep the weights of the best evaluation, saving a checkpoint at each (transformers'
    # load_best_model_at_end): none, loss (lowest validation loss), recall (highest recall).
    keep_best: Literal["none", "loss", "recall"] = "none"

    @model_validator(mode="after")
    def _consistent(self) -> EvalConfig:
        if self.keep_best != "none" and not (self.every_steps or self.every_epoch):
            raise ValueError("keep_best needs evaluations: set every_epoch or every_steps")
        if self.keep_best == "recall" and not (self.recall_questions and self.recall_at == "every"):
            raise ValueError("keep_best recall needs recall_questions with recall_at: every")
        return self


class DistributedConfig(StrictModel):
    strategy: Literal["ddp", "fsdp"] = "ddp"


class TrainTracking(TrackingConfig):
    experiment: str = Field("tuneops-train", min_length=1)
    log_model: bool = True
    # A tracking server that stops answering (workloads/train/metric_outbox.py).
    retry: MetricRetry = Field(default_factory=MetricRetry)


class TrainConfig(StrictModel):
    base_model: str = Field(DEFAULT_MODEL, min_length=1)
    dataset: str = Field("cloudops", min_length=1)
    run_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    output_dir: Path | None = None
    method: Literal["lora", "dora", "qlora"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gradient_checkpointing: bool = False
    attn_implementation: Literal["sdpa", "sdpa_packed", "eager", "flash_attention_2"] = "sdpa"
    lm_head_loss: Literal["auto", "trl_fused", "selected_logits"] = "auto"
    # fp32 on the CPU: frozen Linear products through oneDNN with packed weights
    # (workloads/train/packed_frozen.py); false: torch's own (MKL) products.
    pack_frozen: bool = True
    seed: int = 42
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    tracking: TrainTracking = Field(default_factory=TrainTracking)
    merge: bool = True
    # TRL SFTConfig arguments, checked by SFTConfig itself (workloads/train/trl_args.py).
    trl: dict[str, Any] = Field(default_factory=lambda: dict(PROJECT_DEFAULTS))

    @field_validator("trl")
    @classmethod
    def _trl(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_trl_section(value)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.method == "qlora" and self.precision == "fp32":
            raise ValueError("qlora computes in bf16 or fp16; set precision to auto, bf16 or fp16")
        return self


def load_train_config(
    path: str | Path | None = None,
    *,
    env: str | None = None,
    overrides: list[str] | None = None,
) -> TrainConfig:
    """Read the training config: file, ``env`` overlay, then ``key.sub=value`` overrides."""
    return load_config(TrainConfig, path or DEFAULT_CONFIG, env=env, overrides=overrides)


def train_config_from_text(
    text: str, *, source: str, overrides: list[str] | None = None
) -> TrainConfig:
    """A config serialised with ``to_yaml`` (the cluster job's), then ``overrides``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise UserError(f"{source}: the top level must be a mapping")
    return validate(TrainConfig, apply_overrides(data, overrides), source)


def to_yaml(cfg: TrainConfig) -> str:
    """The whole config as YAML; ``train_config_from_text`` reads it back to an equal one."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
