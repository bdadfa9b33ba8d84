"""What a finished run leaves on disk (rank 0): adapter, merged model, config, loss curve."""

from __future__ import annotations

from pathlib import Path

from tuneops.core.io import atomic_dir, atomic_write_jsonl, atomic_write_text
from workloads.train.callbacks import Counters
from workloads.train.config import to_yaml
from workloads.train.runs import TrainRun


def save_outputs(run: TrainRun, trainer, counters: Counters) -> None:
    """Adapter (with the model's own chat template), merged model, skipped records, resolved
    config and loss curve, each written atomically under the run directory."""
    tokenizer = trainer.processing_class
    tokenizer.chat_template = trainer.original_chat_template
    with atomic_dir(run.adapter_dir) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    if run.merged_dir is not None:
        save_merged(run.model_dir, run.adapter_dir, tokenizer, run.merged_dir)
    if run.splits.skipped:
        atomic_write_jsonl(run.out_dir / "skipped.jsonl", run.splits.skipped)
    atomic_write_text(
        run.out_dir / "config.yaml",
        to_yaml(run.cfg),
    )
    loss_curve(run.out_dir / "loss_curve.png", counters.history, counters.eval_history)


def save_merged(model_dir: Path, adapter_dir: Path, tokenizer, target: Path) -> None:
    """Reload the base in full precision, apply the adapter, merge, save with the tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    merged.generation_config.eos_token_id = eos
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(target) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def loss_curve(path: Path, history, eval_history) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        ax.plot(*zip(*history, strict=True), label="train loss")
    if eval_history:
        ax.plot(*zip(*eval_history, strict=True), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
