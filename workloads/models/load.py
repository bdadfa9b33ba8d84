"""Load a model reference into an inference-ready model and tokenizer.

Any reference ``workloads.models.resolve_model`` understands works. A directory holding a LoRA
adapter (``adapter_config.json``) is loaded onto its base model and merged into the base
weights, so inference pays no adapter cost per token. ``prepack`` packs the Linear weights for
oneDNN on the CPU (``workloads.models.prepack``). Evaluation and serving both load here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.models.precision import choose_precision, pick_device
from workloads.models.resolve import resolve_model

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    path: Path
    device: Any
    dtype: Any
    adapter_merged: bool
    load_seconds: float
    packed_linears: int = 0
    precision_reason: str = ""


def _adapter_base(adapter_dir: Path) -> str:
    try:
        data = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{adapter_dir}/adapter_config.json is unreadable: {exc}") from exc
    base = data.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_dir}/adapter_config.json names no base_model_name_or_path")
    return str(base)


def find_adapter_dir(root: Path) -> Path | None:
    if (root / "adapter_config.json").is_file():
        return root
    found = sorted(root.rglob("adapter_config.json"), key=lambda p: len(p.parts))
    has_weights = any(root.rglob("config.json"))
    return found[0].parent if found and not has_weights else None


def _load_merged(adapter_dir: Path, torch_dtype, tracking_uri: str | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_ref = _adapter_base(adapter_dir)
    base_dir = resolve_model(base_ref, tracking_uri=tracking_uri)
    log.info("loading base %s and merging the LoRA adapter from %s", base_ref, adapter_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype)
    model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    return model, AutoTokenizer.from_pretrained(tok_dir)


def _load_full(path: Path, torch_dtype, ref: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise UserError(f"{path} holds no model (config.json) and no LoRA adapter")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model {ref} from {path}: {exc}") from exc
    return model, tokenizer


def load_model(
    ref: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    prepack: bool = False,
    tracking_uri: str | None = None,
) -> LoadedModel:
    """Resolve ``ref`` (pinning an alias first), merge a LoRA adapter if it is one, and put the
    model in eval mode. ``prepack`` (inference only) packs Linear weights on the CPU."""
    started = time.perf_counter()
    torch_device = pick_device(device)
    precision = choose_precision(dtype, torch_device)
    path = Path(ref).expanduser()
    # A local adapter directory has no full weights, so look before resolve_model refuses it.
    adapter_dir = find_adapter_dir(path) if path.is_dir() else None
    if adapter_dir is not None:
        model, tokenizer = _load_merged(adapter_dir, precision.dtype, tracking_uri)
        path = adapter_dir
    else:
        path = resolve_model(ref, tracking_uri=tracking_uri)
        model, tokenizer = _load_full(path, precision.dtype, ref)
    model.to(torch_device).eval()
    packed = 0
    if prepack:  # prepack_linears itself leaves a GPU model alone
        from workloads.models.prepack import prepack_linears

        packed = prepack_linears(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        path=path,
        device=torch_device,
        dtype=precision.dtype,
        adapter_merged=adapter_dir is not None,
        load_seconds=time.perf_counter() - started,
        packed_linears=packed,
        precision_reason=precision.reason,
    )
