"""Before anything heavy is loaded: refuse what this machine cannot do, and pick the precision."""

from __future__ import annotations

import importlib.util

from tuneops.core.errors import MissingToolError, UserError
from workloads.models.precision import Precision, choose_precision, pick_device
from workloads.train.config import TrainConfig


def preflight(cfg: TrainConfig) -> None:
    """Refuse what this machine cannot do, before anything heavy is loaded."""
    import torch

    cuda = torch.cuda.is_available()
    if cfg.method == "qlora":
        missing = []
        if not cuda:
            missing.append("a CUDA GPU")
        if importlib.util.find_spec("bitsandbytes") is None:
            missing.append("the bitsandbytes package")
        if missing:
            raise MissingToolError(
                f"method qlora needs {' and '.join(missing)}; on this machine use "
                "`--set method=lora` (or dora), or run it on a GPU node with "
                "`--on-cluster --env ENV`"
            )
    if cfg.distributed.strategy == "fsdp" and not cuda:
        raise UserError(
            "distributed.strategy fsdp is for GPU nodes; on CPU use distributed.strategy=ddp"
        )
    if cfg.attn_implementation == "flash_attention_2" and not cuda:
        raise UserError("attn_implementation flash_attention_2 needs a GPU; use sdpa on CPU")
    if cfg.precision == "fp16" and not cuda:
        raise UserError("precision fp16 needs a GPU; use auto, bf16 or fp32 on CPU")


def train_precision(cfg: TrainConfig) -> Precision:
    """The run's precision (``.short`` is bf16, fp16 or fp32) and why, from ``cfg.precision``
    and what this machine runs fast (``workloads.models.precision.choose_precision``)."""
    return choose_precision(cfg.precision, pick_device("auto"))
