"""Model, tokenizer, PEFT adapter config and ``SFTConfig``, put together into the trainer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneops.core.errors import UserError
from workloads.train.config import TrainConfig
from workloads.train.trl_args import SFTRuntime, build_sft_config


def load_tokenizer(model_dir: Path, assistant_only: bool):
    """The tokenizer with the training chat template (assistant-only loss) and a pad token;
    returns it with the model's own template, which the saved tokenizer gets back."""
    from transformers import AutoTokenizer

    from workloads.train.chat_template import training_chat_template

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    original_template = tokenizer.chat_template
    if assistant_only:
        patched = training_chat_template(tokenizer)
        if patched:
            tokenizer.chat_template = patched
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, original_template


def load_base(cfg: TrainConfig, model_dir: Path, precision: str, cuda: bool):
    """The base model: 4-bit NF4 for QLoRA, bf16/fp16 weights on a GPU, fp32 weights on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"attn_implementation": cfg.attn_implementation}
    if cfg.attn_implementation == "sdpa_packed":
        from workloads.models.packed_attention import register

        register()
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if precision == "bf16" else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
    elif cuda and precision in ("bf16", "fp16"):
        kwargs["dtype"] = torch.bfloat16 if precision == "bf16" else torch.float16
    else:
        # On CPU the weights stay fp32; bf16 runs as autocast, which keeps LoRA updates exact.
        kwargs["dtype"] = torch.float32
    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)


def peft_config(cfg: TrainConfig, num_layers: int):
    from peft import LoraConfig

    from workloads.train.frozen_layers import top_layer_indices

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        layers_to_transform=top_layer_indices(num_layers, cfg.lora.top_layers),
        use_dora=cfg.method == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )


def replay_frozen_layers(cfg: TrainConfig, model):
    """Store the frozen layers' output per row where it is safe: not with gradient
    checkpointing (its replay needs inputs that require grad) nor under FSDP (sharded layers)."""
    from workloads.train.frozen_layers import install_frozen_prefix

    if cfg.gradient_checkpointing or cfg.distributed.strategy == "fsdp":
        return None
    return install_frozen_prefix(model, cfg.lora.top_layers, cfg.lora.frozen_cache_mb)


def frozen_weights_for_the_cpu(cfg: TrainConfig, model, precision: str, cuda: bool) -> None:
    """On the CPU, the frozen weights in the form it multiplies fastest: rounded to bf16 once
    under bf16 autocast, packed for oneDNN in fp32 (``pack_frozen``)."""
    if cuda:
        return
    if precision == "bf16":
        frozen_weights_in_bf16(model)
    elif precision == "fp32" and cfg.pack_frozen:
        from workloads.train.packed_frozen import pack_frozen_linears

        pack_frozen_linears(model)


def frozen_weights_in_bf16(model) -> int:
    """Keep the frozen ``Linear`` weights in bf16, for bf16 autocast on the CPU; returns how
    many. Autocast casts an fp32 weight to bf16 at every call and keeps no copy of a weight
    that needs no gradient, so a step cast every frozen matrix again (about 8% of a step on
    one thread). Rounded once here, the products see the same bf16 values, and the numbers do
    not change (a test checks the losses and adapter gradients bit for bit). The adapters stay
    fp32, and so does everything outside a ``Linear`` (embeddings, norms). A head tied to the
    input embeddings gets a bf16 copy of its own; the embeddings keep their fp32 weight."""
    import torch

    converted = 0
    embeddings = model.get_input_embeddings()
    tied = embeddings.weight if embeddings is not None else None
    for module in model.modules():
        if type(module) is not torch.nn.Linear or module.weight.requires_grad:
            continue
        if module.weight.dtype != torch.float32:
            continue
        bf16 = module.weight.detach().to(torch.bfloat16)
        if module.weight is tied:  # untie: the lookup keeps its fp32 rows
            module.weight = torch.nn.Parameter(bf16, requires_grad=False)
        else:
            module.weight.data = bf16
        if module.bias is not None and not module.bias.requires_grad:
            module.bias.data = module.bias.data.to(torch.bfloat16)
        converted += 1
    return converted


def uses_selected_logits(cfg: TrainConfig, cuda: bool) -> bool:
    """``lm_head_loss``: ``auto`` is TRL's fused loss on a GPU, the selected-logits one on CPU."""
    return cfg.lm_head_loss == "selected_logits" or (cfg.lm_head_loss == "auto" and not cuda)


def build_trainer(
    cfg: TrainConfig,
    model_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    *,
    precision: str,
    checkpoints_dir: Path,
    counters,
    tracker: Any = None,
    checkpoint_uri: str | None = None,
    threads: Any = None,
):
    """The ``CountingSFTTrainer`` for ``cfg``, ready to ``train()``; ``precision`` is bf16,
    fp16 or fp32 (``workloads.train.preflight.train_precision``)."""
    import torch
    from datasets import Dataset

    from workloads.train.callbacks import make_callbacks
    from workloads.train.sft_trainer import CountingSFTTrainer

    cuda = torch.cuda.is_available()
    assistant_only = cfg.data.loss_on == "assistant" and "messages" in train_rows[0]
    tokenizer, original_template = load_tokenizer(model_dir, assistant_only)
    runtime = SFTRuntime(
        precision=precision,
        cuda=cuda,
        world=int(os.environ.get("WORLD_SIZE", "1")),
        checkpoints_dir=checkpoints_dir,
        has_eval=bool(eval_rows),
        assistant_only=assistant_only,
    )
    args = build_sft_config(cfg, runtime)
    model = load_base(cfg, model_dir, precision, cuda)
    try:
        trainer = CountingSFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config(cfg, model.config.num_hidden_layers),
            callbacks=make_callbacks(
                counters, tracker, checkpoint_uri, threads, cfg.checkpoint.upload_retry
            ),
            counters=counters,
            selected_logits=uses_selected_logits(cfg, cuda),
            original_chat_template=original_template,
        )
    except ValueError as exc:
        raise UserError(f"cannot prepare training: {exc}") from exc
    frozen_weights_for_the_cpu(cfg, trainer.model, precision, cuda)
    trainer.frozen_prefix = replay_frozen_layers(cfg, trainer.model)
    if cfg.eval.recall_questions:
        from workloads.train.recall import RecallProbe

        questions, limit = cfg.eval.recall_questions, cfg.eval.recall_limit
        trainer.recall_probe = RecallProbe(questions, limit, model_dir, precision)
        trainer.recall_every = cfg.eval.recall_at == "every"
    return trainer
