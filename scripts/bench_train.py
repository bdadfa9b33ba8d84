"""Benchmark: the project's training defaults against plain TRL SFTTrainer defaults with PEFT.

Same base model, same dataset slice, one epoch each, each in its own subprocess (so peak RSS is
its own):

- ``project``: ``tuneops train`` with configs/train/default.yaml (BFD packing into padding-free
  rows, bf16 autocast where the CPU has it, assistant-only loss, LM-head loss over trained
  positions only);
- ``baseline``: ``SFTTrainer`` with ``SFTConfig`` defaults and the same LoRA adapter (no packing,
  fp32, loss on every token).

Both are then scored with one function: the assistant-token validation loss. Prints examples/s,
peak RSS, validation loss and the ratios project/baseline.

    .venv/bin/python scripts/bench_train.py [--examples 64] [--dataset cloudops]
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
        ]
    )


def _train_baseline(cfg, model_dir: Path, tokenizer, train_rows: list[dict], out: Path):
    """Plain SFTTrainer with SFTConfig defaults and the same LoRA adapter (fp32)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,  # fp32
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


def worker(kind: str, snapshot: Path, work: Path) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workloads.models import resolve_model
    from workloads.train.data import open_snapshot, prepare_splits

    cfg = _bench_config(kind, snapshot, work)
    splits = prepare_splits(open_snapshot(str(snapshot)), max_eval_examples=None)
    model_dir = resolve_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if kind == "project":
        from workloads.train.trainer import run_training

        result = run_training(cfg)
        seconds, adapter = result.train_seconds, result.adapter_dir
    else:
        seconds, adapter = _train_baseline(cfg, model_dir, tokenizer, splits.train, work / kind)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter)
    return {
        "kind": kind,
        "examples": len(splits.train),
        "train_seconds": seconds,
        "examples_per_s": len(splits.train) / seconds,
        "peak_rss_mb": peak_rss_mb,
        "val_loss": _validation_loss(model, tokenizer, splits.validation),
    }


def _run_worker(kind: str, snapshot: Path, work: Path) -> dict | None:
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
    print(
        f"bench-train: {examples} examples, one epoch; project {proj['examples_per_s']:.2f} "
        f"ex/s vs baseline {base['examples_per_s']:.2f} ex/s "
        f"({proj['examples_per_s'] / base['examples_per_s']:.2f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=64, help="train examples (one epoch)")
    parser.add_argument("--dataset", default="cloudops", help="snapshot reference")
    parser.add_argument("--worker", choices=["project", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        print("RESULT " + json.dumps(worker(opts.worker, opts.snapshot, opts.work)), flush=True)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        snapshot = _subset_snapshot(opts.dataset, opts.examples, work / "snapshot")
        results = {}
        for kind in ("baseline", "project"):
            print(f"[bench-train] {kind}: training on {opts.examples} examples ...", flush=True)
            results[kind] = _run_worker(kind, snapshot, work)
            if results[kind] is None:
                return 1
    _report(results["baseline"], results["project"], opts.examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
