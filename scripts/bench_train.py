"""Benchmark: the project's training defaults against plain TRL SFTTrainer defaults with PEFT.

Same base model, same dataset slice, one epoch each, each in its own subprocess (so peak RSS is
its own):

- ``project``: ``tuneops train`` with configs/train/default.yaml (BFD packing into padding-free
  rows, bf16 autocast where the CPU has it, assistant-only loss, LM-head loss over trained
  positions only);
- ``baseline``: ``SFTTrainer`` with ``SFTConfig`` defaults and the same LoRA adapter (no packing,
  loss on every token), in the same precision as the project (``choose_precision``: bf16 only
  where the CPU runs it natively), so the ratios measure the methods, not the number format.

Both are then scored with one function: the assistant-token validation loss. Prints examples/s,
peak RSS, validation loss and the ratios project/baseline.

It also prints utilization (``bench_utilization``): the CPU features found, the precision and
why, and per side the model FLOP/s achieved (trained tokens/s x model FLOPs per trained token,
``workloads.models.flops.train_flops`` for that side's adapters, frozen layers and LM-head
positions) as a fraction of this machine's matmul peak, measured in each worker before and
after training in the same dtype and thread count (the best of those is the peak). The
project's timed window holds only its training steps: the validation pass at the epoch's end
and the development-question probe are switched off for the benchmark (both sides are scored
by the same validation function afterwards).

``--threads N`` runs both workers (and the peak) on N torch threads (``OMP_NUM_THREADS``);
by default torch's own count, one per core.

    .venv/bin/python scripts/bench_train.py [--examples 64] [--dataset cloudops] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _subset_snapshot(ref: str, examples: int, target: Path) -> Path:
    from workloads.data.snapshot import load_snapshot

    snap = load_snapshot(ref)
    target.mkdir(parents=True)
    train = snap.split("train")[:examples]
    for name, records in (("train", train), ("validation", snap.split("validation"))):
        with open(target / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in records)
    shutil.copy(snap.path / "test.jsonl", target / "test.jsonl")
    manifest = dict(snap.manifest, snapshot_id=f"{snap.id}-bench{examples}")
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def _validation_loss(model, tokenizer, rows: list[dict]) -> float:
    """Token-mean loss on the assistant turns (end-of-turn included), one example at a time."""
    import torch

    from workloads.train.chat_template import training_chat_template

    template = training_chat_template(tokenizer) or tokenizer.chat_template
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            enc = tokenizer.apply_chat_template(
                row["messages"],
                chat_template=template,
                return_assistant_tokens_mask=True,
                return_dict=True,
            )
            ids = torch.tensor([enc["input_ids"]])
            labels = ids.clone()
            labels[0, torch.tensor(enc["assistant_masks"]) == 0] = -100
            n = int((labels[0, 1:] != -100).sum())
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss
            total += float(loss) * n
            count += n
    return total / count


def _bench_config(kind: str, snapshot: Path, work: Path):
    from workloads.train.config import load_train_config

    return load_train_config(
        overrides=[
            f"dataset={snapshot}",
            f"output_dir={work / kind}",
            f"tracking.uri=sqlite:///{work / kind}-mlflow.db",
            "optim.epochs=1",
            "optim.max_steps=-1",
            "checkpoint.every_steps=0",
            "merge=false",
            "tracking.log_model=false",
            # Only training steps in the timed window (the baseline evaluates nothing either).
            "eval.every_epoch=false",
            "eval.recall_questions=null",
        ]
    )


def _train_baseline(cfg, model_dir: Path, tokenizer, train_rows: list[dict], out: Path):
    """Plain SFTTrainer with SFTConfig defaults and the same LoRA adapter, in the precision the
    project picks on this machine (fp32 weights, bf16 autocast where the CPU has bf16)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from workloads.train.preflight import train_precision

    args = SFTConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=train_precision(cfg).short == "bf16",
        num_train_epochs=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
    )
    peft = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        peft_config=peft,
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    adapter = out / "adapter"
    trainer.model.save_pretrained(adapter)
    return seconds, adapter


def _token_stats(tokenizer, rows: list[dict], template, max_length: int, loss_only: bool):
    """Tokens, causal attention pairs and LM-head positions of ``rows`` as ``template``
    encodes them: logits at the positions whose next token is trained (``loss_only``), else
    at every position."""
    from workloads.models.flops import TokenStats

    lengths, logits = [], 0
    for row in rows:
        enc = tokenizer.apply_chat_template(
            row["messages"],
            chat_template=template,
            return_assistant_tokens_mask=loss_only,
            return_dict=True,
        )
        n = min(len(enc["input_ids"]), max_length)
        lengths.append(n)
        logits += sum(enc["assistant_masks"][1:n]) if loss_only else n
    return TokenStats.of(lengths, logits)


def _model_flops(kind: str, cfg, model_dir: Path, tokenizer, rows: list[dict]) -> tuple:
    """Model FLOPs of one epoch over ``rows`` as ``kind`` trains them (one visit per row, so
    the frozen lower layers are computed for every row)."""
    from transformers import AutoConfig

    from workloads.models.flops import ModelShape, TrainPlan, train_flops
    from workloads.train.build import uses_selected_logits
    from workloads.train.chat_template import training_chat_template

    shape = ModelShape.from_config(AutoConfig.from_pretrained(model_dir))
    modules = tuple(cfg.lora.target_modules)
    if kind == "project":
        template = training_chat_template(tokenizer) or tokenizer.chat_template
        loss_only = cfg.data.loss_on == "assistant" and uses_selected_logits(cfg, cuda=False)
        stats = _token_stats(tokenizer, rows, template, cfg.data.max_length, loss_only)
        adapted = cfg.lora.top_layers or shape.layers
    else:  # SFTConfig defaults: the tokenizer's template, max_length 1024, logits everywhere
        stats = _token_stats(tokenizer, rows, tokenizer.chat_template, 1024, False)
        adapted = shape.layers
    plan = TrainPlan(adapted_layers=adapted, rank=cfg.lora.r, modules=modules)
    return train_flops(shape, plan, stats), stats.tokens


def worker(kind: str, snapshot: Path, work: Path, peak_size: int) -> dict:
    import torch
    from bench_utilization import measure_peak
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workloads.models import resolve_model
    from workloads.train.data import open_snapshot, prepare_splits
    from workloads.train.preflight import train_precision

    cfg = _bench_config(kind, snapshot, work)
    splits = prepare_splits(open_snapshot(str(snapshot)), max_eval_examples=None)
    model_dir = resolve_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    precision, threads = train_precision(cfg), torch.get_num_threads()
    peaks = [measure_peak(precision, threads, peak_size)]
    if kind == "project":
        from workloads.train.trainer import run_training

        result = run_training(cfg)
        seconds, adapter = result.train_seconds, result.adapter_dir
        counted = round(result.tokens_per_s * seconds)  # the trainer's own count
    else:
        seconds, adapter = _train_baseline(cfg, model_dir, tokenizer, splits.train, work / kind)
        counted = None
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peaks.append(measure_peak(precision, threads, peak_size))
    flops, tokens = _model_flops(kind, cfg, model_dir, tokenizer, splits.train)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter)
    return {
        "tokens": tokens,
        "counted_tokens": counted,
        "model_flops_per_s": flops / seconds,
        "model_tflops_per_s": flops / seconds / 1e12,
        "matmul_peak": max(peaks),
        "dtype": precision.dtype_name,
        "threads": threads,
        "kind": kind,
        "examples": len(splits.train),
        "train_seconds": seconds,
        "examples_per_s": len(splits.train) / seconds,
        "peak_rss_mb": peak_rss_mb,
        "val_loss": _validation_loss(model, tokenizer, splits.validation),
    }


def _run_worker(kind: str, snapshot: Path, work: Path, peak_size: int) -> dict | None:
    """One worker in its own subprocess (its own peak RSS); None when it failed."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--snapshot",
            str(snapshot),
            "--work",
            str(work),
            "--peak-size",
            str(peak_size),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, TOKENIZERS_PARALLELISM="false"),
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr[-4000:])
        print(f"[bench-train] {kind} failed (exit {done.returncode})")
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def _report(base: dict, proj: dict, examples: int) -> None:
    print()
    print(f"{'':<22}{'baseline (TRL defaults)':>26}{'project defaults':>20}{'ratio':>10}")
    rows = [
        ("examples/s", "examples_per_s", "{:.3f}", ">= 2.5"),
        ("peak RSS (MiB)", "peak_rss_mb", "{:.0f}", "<= 0.8"),
        ("validation loss", "val_loss", "{:.4f}", "<= 1.02"),
        ("train seconds", "train_seconds", "{:.1f}", ""),
        ("tokens (one epoch)", "tokens", "{:,}", ""),
        ("model TFLOP/s", "model_tflops_per_s", "{:.4f}", ""),
    ]
    verdicts = []
    for label, key, fmt, goal in rows:
        ratio = proj[key] / base[key]
        print(f"{label:<22}{fmt.format(base[key]):>26}{fmt.format(proj[key]):>20}{ratio:>9.2f}x")
        if goal:
            op, target = goal.split()
            ok = ratio >= float(target) if op == ">=" else ratio <= float(target)
            verdicts.append(f"{label} {ratio:.2f}x (goal {goal}): {'met' if ok else 'NOT met'}")
    print()
    for line in verdicts:
        print("  " + line)
    for line in _utilization(base, proj):
        print("  " + line)
    counted = proj.get("counted_tokens")
    if counted is not None and abs(counted - proj["tokens"]) > 0.01 * proj["tokens"]:
        print(f"  note: the trainer counted {counted:,} tokens; FLOPs are over {proj['tokens']:,}")
    print(
        f"bench-train: {examples} examples, one epoch; project {proj['examples_per_s']:.2f} "
        f"ex/s vs baseline {base['examples_per_s']:.2f} ex/s "
        f"({proj['examples_per_s'] / base['examples_per_s']:.2f}x)"
    )


def _utilization(base: dict, proj: dict) -> list[str]:
    """Each side's model FLOP/s over the best matmul peak either worker measured."""
    from bench_utilization import TRAIN_GOAL, Utilization

    peak = max(base["matmul_peak"], proj["matmul_peak"])
    sides = (("baseline (TRL defaults)", base, None), ("project defaults", proj, TRAIN_GOAL))
    return [
        Utilization(label, side["model_flops_per_s"], peak, side["dtype"], goal).line()
        for label, side, goal in sides
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=64, help="train examples (one epoch)")
    parser.add_argument("--dataset", default="cloudops", help="snapshot reference")
    parser.add_argument(
        "--peak-size", type=int, default=2048, help="side of the matrices of the matmul peak"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads of both sides (0: torch's default)"
    )
    parser.add_argument("--worker", choices=["project", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        result = worker(opts.worker, opts.snapshot, opts.work, opts.peak_size)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    import torch
    from bench_utilization import hardware_line

    from workloads.train.config import load_train_config
    from workloads.train.preflight import train_precision

    if opts.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(opts.threads)  # read by torch in each worker
    precision = train_precision(load_train_config())
    threads = opts.threads or torch.get_num_threads()
    print(f"[bench-train] {hardware_line(precision, threads)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        snapshot = _subset_snapshot(opts.dataset, opts.examples, work / "snapshot")
        results = {}
        for kind in ("baseline", "project"):
            print(f"[bench-train] {kind}: training on {opts.examples} examples ...", flush=True)
            results[kind] = _run_worker(kind, snapshot, work, opts.peak_size)
            if results[kind] is None:
                return 1
    _report(results["baseline"], results["project"], opts.examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
