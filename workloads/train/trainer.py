"""`run_training`: TRL's SFTTrainer with PEFT, plus what they lack.

What is added on top of TRL: the typed config, a training chat template with generation markers
when the model's own has none, a checkpoint completion marker with an S3 copy and resume from
the newest valid checkpoint, MLflow logging (params, config, per-step metrics, the snapshot as an
input, loss curve, adapter, merged model), a rank-agreement check under DDP, a progress bar with
throughput, and the merged model saved next to the adapter.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tuneops.core.errors import MissingToolError, UserError
from tuneops.core.io import atomic_dir, atomic_write_json, atomic_write_jsonl, atomic_write_text
from tuneops.core.paths import REPO_ROOT, cache_dir, default_tracking_uri
from tuneops.core.tracking import use_experiment
from workloads.train.config import TrainConfig

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
RUN_STATE = "run_state.json"
PROBE_CONVERSATIONS = [
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ],
]


@dataclass
class TrainResult:
    run_id: str | None
    run_name: str
    output_dir: Path
    adapter_dir: Path
    merged_dir: Path | None
    checkpoints_dir: Path
    global_step: int
    final_loss: float | None
    eval_loss_before: float | None
    eval_loss_after: float | None
    examples_per_s: float
    tokens_per_s: float
    train_seconds: float
    world_size: int = 1
    is_main: bool = True
    resumed_from: str | None = None
    skipped_records: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------- preflight


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
                "`--set method=lora` (or dora), or run it on a GPU node with `--on-cluster ENV`"
            )
    if cfg.distributed.strategy == "fsdp" and not cuda:
        raise UserError(
            "distributed.strategy fsdp is for GPU nodes; on CPU use distributed.strategy=ddp"
        )
    if cfg.attn_implementation == "flash_attention_2" and not cuda:
        raise UserError("attn_implementation flash_attention_2 needs a GPU; use sdpa on CPU")
    if cfg.precision == "fp16" and not cuda:
        raise UserError("precision fp16 needs a GPU; use auto, bf16 or fp32 on CPU")


def resolve_precision(precision: str) -> str:
    """``auto`` becomes bf16 where the GPU or CPU supports it, else fp16 on GPU, else fp32."""
    import torch

    if precision != "auto":
        if precision == "bf16" and not torch.cuda.is_available() and not _cpu_bf16():
            raise UserError("precision bf16: this CPU has no bf16 support; use auto or fp32")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if _cpu_bf16() else "fp32"


def _cpu_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# ---------------------------------------------------------------------------- chat template


def training_chat_template(tokenizer) -> str | None:
    """A chat template with ``{% generation %}`` markers that renders like the model's own.

    Returns None when the tokenizer's template already has the markers. Tries TRL's patched
    templates first, then the project's own (SmolLM2/ChatML), accepted only if it renders every
    probe conversation exactly as the original does.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    original = tokenizer.chat_template
    if not original:
        raise UserError("the base model's tokenizer has no chat template; set data.loss_on=all")
    if has_generation_markers(original):
        return None
    try:
        patched = get_training_chat_template(tokenizer)
        if patched:
            return patched
    except ValueError:
        pass
    for file in sorted(TEMPLATES_DIR.glob("*.jinja")):
        candidate = file.read_text(encoding="utf-8")
        if _renders_like(tokenizer, candidate):
            return candidate
    raise UserError(
        "the base model's chat template has no {% generation %} markers and no matching "
        f"training template is known; add one under {TEMPLATES_DIR} or set data.loss_on=all"
    )


def _renders_like(tokenizer, candidate: str) -> bool:
    try:
        for messages in PROBE_CONVERSATIONS:
            for prompt in (False, True):
                ours = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=prompt, chat_template=candidate
                )
                theirs = tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=prompt
                )
                if ours != theirs:
                    return False
    except Exception:  # a template that cannot render this conversation does not match
        return False
    return True


# ---------------------------------------------------------------------------- helpers


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def default_run_name(cfg: TrainConfig, dataset_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{dataset_name}-{cfg.method}-{stamp}"


def runs_root() -> Path:
    return cache_dir() / "runs"


def latest_run_dir() -> Path | None:
    root = runs_root()
    if not root.is_dir():
        return None
    dirs = [p for p in root.iterdir() if (p / RUN_STATE).is_file()]
    return max(dirs, key=lambda p: (p / RUN_STATE).stat().st_mtime) if dirs else None


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    else:
        out[prefix] = value if not isinstance(value, list) else ",".join(map(str, value))
    return out


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    return value


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rank_divergence(model) -> float:
    """Largest difference between ranks of any trainable parameter (0.0 when they agree)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return 0.0
    params = [p.detach().float().flatten() for p in model.parameters() if p.requires_grad]
    flat = torch.cat(params).cpu()
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)


# ---------------------------------------------------------------------------- callbacks


def _make_callbacks(counter: dict[str, float], tracker: Any, checkpoint_uri: str | None):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    from workloads.train import checkpoints

    class Progress(TrainerCallback):
        """One bar for the whole run: loss, tokens/s and examples/s; rank 0 only."""

        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix(
                    loss=f"{logs['loss']:.3f}",
                    tok_s=f"{logs.get('tokens_per_s', 0):.0f}",
                    ex_s=f"{logs.get('examples_per_s', 0):.2f}",
                )

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    class Metrics(TrainerCallback):
        """Throughput into the logs; every log line to MLflow; markers on finished saves."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None:
                return
            elapsed = max(time.perf_counter() - counter["t0"], 1e-9)
            world = max(args.world_size, 1)
            if "loss" in logs:
                logs["tokens_per_s"] = counter["tokens"] * world / elapsed
                logs["examples_per_s"] = counter["examples"] * world / elapsed
                counter["last_loss"] = float(logs["loss"])
                counter["history"].append((state.global_step, float(logs["loss"])))
            if "eval_loss" in logs:
                counter["eval_history"].append((state.global_step, float(logs["eval_loss"])))
            if state.is_world_process_zero and tracker is not None:
                tracker.log_metrics(logs, step=state.global_step)

        def on_evaluate(self, args, state, control, **kwargs):
            if state.global_step == 0:  # eval_on_start: throughput counts from here
                counter["t0"] = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                checkpoints.mark_complete(path, state.global_step)
                if checkpoint_uri:
                    checkpoints.upload(path, checkpoint_uri)

    return [Metrics(), Progress()]


def selected_logits_loss(trainer, model, inputs, num_items_in_batch):
    """Token-mean cross entropy computed from the logits of the labelled positions only.

    TRL's fused LM head runs a Triton kernel on GPUs; on CPU its torch fallback is several times
    slower than one LM-head matmul restricted (``logits_to_keep``) to the positions whose next
    token is trained, which also never builds the logits of prompt positions.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    forward = {k: v for k, v in inputs.items() if k != "labels"}
    forward["use_cache"] = False  # packed examples stay isolated only without a KV cache
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().flatten()
    if keep.numel() == 0:
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)
    logits = model(**forward, logits_to_keep=keep).logits
    kept = targets[:, keep]
    loss_sum = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        kept.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )
    valid = (kept != -100).sum()
    denom = num_items_in_batch if num_items_in_batch is not None else valid
    loss = loss_sum / torch.as_tensor(denom).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * trainer.accelerator.num_processes

    mode = "train" if model.training else "eval"
    with torch.no_grad():
        correct = ((logits.argmax(-1) == kept) & (kept != -100)).sum()
    trainer._metrics[mode]["mean_token_accuracy"].append(
        (correct / valid).item() if valid > 0 else 0.0
    )
    if mode == "train":
        if "attention_mask" in inputs:
            trainer._total_train_tokens += int(inputs["attention_mask"].sum())
        else:
            trainer._total_train_tokens += int(inputs["position_ids"].size(1))
        trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]
    return loss


# ---------------------------------------------------------------------------- MLflow


class Tracker:
    """The MLflow run of one training (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, run_name: str, run_id: str | None):
        import mlflow

        self.mlflow = mlflow
        use_experiment(cfg.mlflow.experiment, cfg.mlflow.tracking_uri or default_tracking_uri())
        self.run = mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name)
        self.run_id = self.run.info.run_id

    def log_metrics(self, logs: dict[str, Any], step: int) -> None:
        metrics = {}
        for key, value in logs.items():
            if isinstance(value, int | float) and math.isfinite(value):
                name = "learning_rate" if key in ("lr", "learning_rate") else key
                metrics[name.replace("/", "_")] = float(value)
        if metrics:
            self.mlflow.log_metrics(metrics, step=step)

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def _log_dataset(mlflow, snapshot, rows: list[dict], context: str) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"messages": json.dumps(r["messages"], ensure_ascii=False)}
            if "messages" in r
            else {"text": r["text"]}
            for r in rows
        ]
    )
    dataset = mlflow.data.from_pandas(
        frame, source=str(snapshot.path), name=f"{snapshot.name}@{snapshot.id}"
    )
    mlflow.log_input(dataset, context=context)


def _loss_curve(path: Path, history, eval_history) -> None:
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


# ---------------------------------------------------------------------------- main entry


def _sft_args(cfg, *, precision, cuda, world, checkpoints_dir, has_eval, assistant_only):
    from trl import SFTConfig

    fsdp_kwargs: dict[str, Any] = {}
    if cfg.distributed.strategy == "fsdp":
        fsdp_kwargs = {
            "fsdp": "full_shard auto_wrap",
            "fsdp_config": {"use_orig_params": True, "activation_checkpointing": False},
        }
    save = cfg.checkpoint.every_steps > 0
    evals = has_eval and cfg.eval.every_steps > 0
    return SFTConfig(
        output_dir=str(checkpoints_dir),
        per_device_train_batch_size=cfg.optim.batch_size,
        per_device_eval_batch_size=cfg.optim.batch_size,
        gradient_accumulation_steps=cfg.optim.grad_accum,
        learning_rate=cfg.optim.learning_rate,
        lr_scheduler_type=cfg.optim.lr_scheduler,
        warmup_steps=cfg.optim.warmup_ratio,
        weight_decay=cfg.optim.weight_decay,
        max_grad_norm=cfg.optim.max_grad_norm,
        num_train_epochs=cfg.optim.epochs,
        max_steps=cfg.optim.max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        ddp_backend=("nccl" if cuda else "gloo") if world > 1 else None,
        ddp_find_unused_parameters=False if world > 1 else None,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps" if save else "no",
        save_steps=cfg.checkpoint.every_steps if save else 500,
        save_total_limit=cfg.checkpoint.keep,
        eval_strategy="steps" if evals else "no",
        eval_steps=cfg.eval.every_steps if evals else None,
        report_to="none",
        disable_tqdm=True,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        packing_strategy="bfd",
        padding_free=cfg.data.packing,
        assistant_only_loss=assistant_only,
        completion_only_loss=False,
        dataloader_num_workers=0,
        **fsdp_kwargs,
    )


def _load_base(cfg: TrainConfig, model_dir: Path, precision: str, cuda: bool):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"attn_implementation": cfg.attn_implementation}
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


def build_trainer(
    cfg: TrainConfig,
    model_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    *,
    checkpoints_dir: Path,
    counter: dict[str, float],
    tracker: Any = None,
    precision: str | None = None,
    checkpoint_uri: str | None = None,
):
    """Model, tokenizer, PEFT config and SFTTrainer, ready to ``train()``."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    cuda = torch.cuda.is_available()
    precision = precision or resolve_precision(cfg.precision)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    chat = "messages" in train_rows[0]
    assistant_only = cfg.data.loss_on == "assistant" and chat

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    original_template = tokenizer.chat_template
    if assistant_only:
        patched = training_chat_template(tokenizer)
        if patched:
            tokenizer.chat_template = patched
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    args = _sft_args(
        cfg,
        precision=precision,
        cuda=cuda,
        world=world,
        checkpoints_dir=checkpoints_dir,
        has_eval=bool(eval_rows),
        assistant_only=assistant_only,
    )
    model = _load_base(cfg, model_dir, precision, cuda)
    peft_config = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        use_dora=cfg.method == "dora",
        bias="none",
        task_type="CAUSAL_LM",
    )

    selected_logits = cfg.lm_head_loss == "selected_logits" or (
        cfg.lm_head_loss == "auto" and not cuda
    )

    class CountingSFTTrainer(SFTTrainer):
        """Counts real examples and tokens per step (a packed row holds several examples)."""

        def training_step(self, model, inputs, *args, **kwargs):
            if "position_ids" in inputs and "attention_mask" not in inputs:
                counter["examples"] += int((inputs["position_ids"] == 0).sum())
                counter["tokens"] += int(inputs["position_ids"].numel())
            else:
                counter["examples"] += int(inputs["input_ids"].shape[0])
                counter["tokens"] += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not selected_logits or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return selected_logits_loss(self, model, inputs, num_items_in_batch)

    try:
        trainer = CountingSFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=_make_callbacks(counter, tracker, checkpoint_uri),
        )
    except ValueError as exc:
        raise UserError(f"cannot prepare training: {exc}") from exc
    trainer.tuneops_original_template = original_template
    return trainer


def _save_merged(cfg, model_dir: Path, adapter_dir: Path, tokenizer, target: Path) -> None:
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


def _log_merged_model(tracker: Tracker, merged_dir: Path) -> None:
    import mlflow
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged_dir)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    mlflow.transformers.log_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        name="model",
        task="text-generation",
        pip_requirements=["transformers", "torch", "accelerate"],
    )


def resolve_output(
    cfg: TrainConfig, dataset_name: str, *, resume: bool, output: Path | None
) -> tuple[str, Path]:
    """Run name and output directory; ``resume`` without either continues the latest run."""
    out = output or cfg.output_dir
    if out is not None:
        out = Path(out).expanduser().resolve()
        return cfg.run_name or out.name, out
    if cfg.run_name:
        return cfg.run_name, runs_root() / cfg.run_name
    if resume:
        latest = latest_run_dir()
        if latest is None:
            raise UserError(f"--resume: no earlier run under {runs_root()}; give --output DIR")
        return latest.name, latest
    name = _broadcast(default_run_name(cfg, dataset_name))
    return name, runs_root() / name


def run_training(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    output: Path | None = None,
    config_source: str | None = None,
) -> TrainResult:
    """Fine-tune ``cfg.base_model`` on ``cfg.dataset``; see contract 3 for the outputs."""
    preflight(cfg)  # before anything heavy is loaded

    import torch
    from accelerate import PartialState

    from workloads.models import resolve_model
    from workloads.train import checkpoints
    from workloads.train.data import open_snapshot, prepare_splits

    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg.precision)
    state = PartialState(cpu=not cuda)
    world, is_main = state.num_processes, state.is_main_process

    snapshot = open_snapshot(cfg.dataset)
    splits = prepare_splits(snapshot, max_eval_examples=cfg.data.max_eval_examples)
    run_name, out_dir = resolve_output(cfg, snapshot.name, resume=resume, output=output)
    ckpt_dir = out_dir / "checkpoints"
    remote = f"{cfg.checkpoint.uri.rstrip('/')}/{run_name}" if cfg.checkpoint.uri else None

    previous = {}
    if (out_dir / RUN_STATE).is_file():
        previous = json.loads((out_dir / RUN_STATE).read_text())
    resume_from = None
    if resume:
        if is_main:
            found = checkpoints.find_resume_point(ckpt_dir, remote)
            resume_from = str(found) if found else None
        resume_from = _broadcast(resume_from)
        if resume_from is None:
            log.warning("--resume: no valid checkpoint in %s; starting from step 0", ckpt_dir)

    with state.main_process_first():
        model_dir = resolve_model(cfg.base_model)

    tracker = None
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(cfg, run_name, previous.get("run_id") if resume else None)
        atomic_write_json(
            out_dir / RUN_STATE,
            {"run_id": tracker.run_id, "run_name": run_name, "dataset": str(snapshot.path)},
        )
    try:
        result = _train(
            cfg,
            precision=precision,
            snapshot=snapshot,
            splits=splits,
            model_dir=model_dir,
            run_name=run_name,
            out_dir=out_dir,
            ckpt_dir=ckpt_dir,
            remote=remote,
            resume_from=resume_from,
            tracker=tracker,
            world=world,
            is_main=is_main,
            config_source=config_source,
        )
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if tracker is not None:
        tracker.close()
    return result


def _train(
    cfg: TrainConfig,
    *,
    precision,
    snapshot,
    splits,
    model_dir,
    run_name,
    out_dir,
    ckpt_dir,
    remote,
    resume_from,
    tracker,
    world,
    is_main,
    config_source,
) -> TrainResult:
    counter: dict[str, Any] = {
        "examples": 0,
        "tokens": 0,
        "t0": time.perf_counter(),
        "last_loss": None,
        "history": [],
        "eval_history": [],
    }
    trainer = build_trainer(
        cfg,
        model_dir,
        splits.train,
        splits.validation,
        checkpoints_dir=ckpt_dir,
        counter=counter,
        tracker=tracker,
        precision=precision,
        checkpoint_uri=remote,
    )
    if tracker is not None:
        mlflow = tracker.mlflow
        resolved = cfg.model_dump(mode="json")
        if not resume_from:
            params = flatten("", resolved, {})
            params.update(
                {
                    "resolved_precision": precision,
                    "world_size": world,
                    "train_examples": len(splits.train),
                    "validation_examples": len(splits.validation),
                    "skipped_records": len(splits.skipped),
                    "model_dir": str(model_dir),
                }
            )
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            _log_dataset(mlflow, snapshot, splits.train, "training")
            if splits.validation:
                _log_dataset(mlflow, snapshot, splits.validation, "validation")
        mlflow.log_text(yaml.safe_dump(resolved, sort_keys=False), "config/train.yaml")
        tags = {
            "tuneops.dataset_snapshot": f"{snapshot.name}/{snapshot.id}",
            "tuneops.base_model": cfg.base_model,
            "tuneops.method": cfg.method,
            "tuneops.world_size": str(world),
        }
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        if config_source:
            tags["tuneops.core.config"] = config_source
        mlflow.set_tags(tags)

    # The validation loss before training comes from eval_on_start, inside train(): evaluating
    # before train() would register the model with accelerate unwrapped, and DDP would then
    # never wrap it (ranks would silently train apart).
    trainer.args.eval_on_start = bool(splits.validation) and not resume_from
    counter["t0"] = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    except ValueError as exc:
        raise UserError(f"training stopped: {exc}") from exc
    seconds = time.perf_counter() - counter["t0"]
    eval_before = counter["eval_history"][0][1] if trainer.args.eval_on_start else None
    eval_after = float(trainer.evaluate()["eval_loss"]) if splits.validation else None
    divergence = rank_divergence(trainer.model)

    step = trainer.state.global_step
    adapter_dir = out_dir / "adapter"
    merged_dir = out_dir / "merged" if cfg.merge else None
    if is_main:
        tokenizer = trainer.processing_class
        tokenizer.chat_template = trainer.tuneops_original_template
        with atomic_dir(adapter_dir) as tmp:
            trainer.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        if merged_dir is not None:
            _save_merged(cfg, model_dir, adapter_dir, tokenizer, merged_dir)
        if splits.skipped:
            atomic_write_jsonl(out_dir / "skipped.jsonl", splits.skipped)
        atomic_write_text(
            out_dir / "config.yaml",
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        )
        _loss_curve(out_dir / "loss_curve.png", counter["history"], counter["eval_history"])
    result = TrainResult(
        run_id=tracker.run_id if tracker else None,
        run_name=run_name,
        output_dir=out_dir,
        adapter_dir=adapter_dir,
        merged_dir=merged_dir,
        checkpoints_dir=ckpt_dir,
        global_step=step,
        final_loss=counter["last_loss"],
        eval_loss_before=eval_before,
        eval_loss_after=eval_after,
        examples_per_s=counter["examples"] * world / max(seconds, 1e-9),
        tokens_per_s=counter["tokens"] * world / max(seconds, 1e-9),
        train_seconds=seconds,
        world_size=world,
        is_main=is_main,
        resumed_from=resume_from,
        skipped_records=len(splits.skipped),
        extra={"rank_divergence": divergence, "precision": precision},
    )
    if tracker is not None:
        mlflow = tracker.mlflow
        final = {
            "train_seconds": seconds,
            "train_examples_per_s": result.examples_per_s,
            "train_tokens_per_s": result.tokens_per_s,
            "rank_divergence": divergence,
        }
        if eval_after is not None:
            final["final_eval_loss"] = eval_after
        if eval_before is not None:
            final["initial_eval_loss"] = eval_before
        mlflow.log_metrics(final, step=step)
        mlflow.log_artifact(str(out_dir / "loss_curve.png"))
        mlflow.log_artifacts(str(adapter_dir), "adapter")
        if splits.skipped:
            mlflow.log_artifact(str(out_dir / "skipped.jsonl"))
        if merged_dir is not None and cfg.mlflow.log_model:
            _log_merged_model(tracker, merged_dir)
        atomic_write_json(out_dir / "result.json", result.to_json())
    _barrier()
    return result


def summary_line(result: TrainResult) -> str:
    ev = ""
    if result.eval_loss_after is not None:
        before = f"{result.eval_loss_before:.3f} -> " if result.eval_loss_before else ""
        ev = f", val loss {before}{result.eval_loss_after:.3f}"
    return (
        f"trained {result.run_name}: {result.global_step} steps in {result.train_seconds:.0f} s"
        f" ({result.examples_per_s:.2f} ex/s){ev}; mlflow run {result.run_id}; "
        f"merged model {result.merged_dir}; adapter {result.adapter_dir}"
    )
