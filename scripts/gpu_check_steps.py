"""The steps of ``scripts/gpu_check.py``: a snapshot of the shipped corpus, a short LoRA
fine-tune with ``run_training``, then the project's engine against one ``generate()`` per
request on the merged model."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_serve_load import PROMPTS

LEVELS = (1, 32)


def write_corpus_snapshot(root: Path):
    """The troubleshooting corpus that the default dataset config reads, as chat records with
    the dataset's system prompt, split by the config's salt: a snapshot under ``root``."""
    from tuneops.core.paths import REPO_ROOT
    from workloads.data.config import load_data_config
    from workloads.data.records import chat_record, qa_messages
    from workloads.data.snapshot import write_snapshot
    from workloads.data.split import split

    cfg = load_data_config()
    source = next(s for s in cfg.sources if s.type == "records")
    lines = (REPO_ROOT / source.path).read_text(encoding="utf-8").splitlines()
    records = []
    for line in filter(str.strip, lines):
        row = json.loads(line)
        messages = qa_messages(row["question"], row["answer"], cfg.formatting.system_prompt)
        records.append(chat_record(row["id"], messages, source.name, row.get("category")))
    manifest = {"description": "gpu-check: the shipped troubleshooting corpus"}
    return write_snapshot("gpu-check", split(records, cfg.split), manifest, [], "", root=root)


def finetune(args, work: Path):
    """``run_training`` on that snapshot: LoRA, ``--steps`` steps, merged at the end."""
    from workloads.train.config import load_train_config
    from workloads.train.trainer import run_training, summary_line

    # MLflow's file store needs no database packages (SQLAlchemy, Alembic, cryptography) on the
    # GPU machine; MLflow asks for this switch before it uses one.
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    snapshot = write_corpus_snapshot(work / "datasets")
    cfg = load_train_config(
        overrides=[
            f"dataset={snapshot.path}",
            f"output_dir={work / 'run'}",
            "run_name=gpu-check",
            f"tracking.uri={(work / 'mlruns').as_uri()}",
            "tracking.experiment=gpu-check",
            "tracking.log_model=false",
            "method=lora",
            f"precision={args.precision}",
            f"optim.max_steps={args.steps}",
            "checkpoint.every_steps=0",
            "data.max_eval_examples=16",
        ]
    )
    result = run_training(cfg)
    print(summary_line(result))
    return result


async def engine_load(engine, prompts: list[list[int]], params, concurrency: int, total: int):
    """Closed-loop clients submitting to the engine: (latencies, output tokens, wall s)."""
    latencies: list[float] = []
    tokens = 0
    next_index = 0

    async def client() -> None:
        nonlocal tokens, next_index
        while next_index < total:
            ids = prompts[next_index % len(prompts)]
            next_index += 1
            started = time.perf_counter()
            seq = engine.submit(ids, params)
            async for event in seq.events():
                if event.kind == "error":
                    raise RuntimeError(event.text)
            tokens += seq.completion_tokens
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, tokens, time.perf_counter() - started


def generate_load(model, tokenizer, prompts, max_tokens: int, concurrency: int, total: int):
    """One ``model.generate`` per request on a pool of ``concurrency`` threads."""
    import torch

    eos = tokenizer.eos_token_id

    def one(index: int) -> tuple[float, int]:
        started = time.perf_counter()
        ids = torch.tensor([prompts[index % len(prompts)]], device=model.device)
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids.shape[1] :]
        return time.perf_counter() - started, int((new != eos).sum())

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(one, range(total)))
    return [d[0] for d in done], sum(d[1] for d in done), time.perf_counter() - started


def row(side: str, level: int, measured: tuple) -> dict:
    latencies, tokens, wall = measured
    return {
        "side": side,
        "concurrency": level,
        "requests": len(latencies),
        "output_tokens": tokens,
        "tokens_per_s": tokens / wall,
        "p50_s": statistics.median(latencies),
        "wall_s": wall,
    }


def encode_chat(tokenizer, prompt: str) -> list[int]:
    """A user prompt as the server's chat route encodes it (``ServingState.encode_chat``)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def serve_and_compare(args, model_dir: Path) -> tuple[list[dict], object]:
    """The merged model on the device: the engine's rows, then one generate() per request."""
    from workloads.models.load import load_model
    from workloads.serve.config import load_serve_config
    from workloads.serve.engine import Engine
    from workloads.serve.sequence import SamplingParams

    serve = load_serve_config()
    loaded = load_model(str(model_dir), dtype=serve.dtype, device=args.device)
    print(f"serving dtype {str(loaded.dtype).removeprefix('torch.')}: {loaded.precision_reason}")
    tok = loaded.tokenizer
    prompts = [encode_chat(tok, p) for p in PROMPTS]
    batching = serve.batching
    engine = Engine(
        loaded.model,
        tok,
        device=loaded.device,
        max_batch=batching.max_batch,
        wait_ms=batching.wait_ms,
        max_prefill_batch=batching.max_prefill_batch,
        max_queue=serve.limits.max_queue,
    )
    engine.start()
    params = SamplingParams(max_tokens=args.max_tokens)
    counts = dict(zip(LEVELS, args.requests, strict=True))
    rows = []
    try:
        asyncio.run(engine_load(engine, prompts, params, 1, 1))  # warm-up
        for level in LEVELS:
            measured = asyncio.run(engine_load(engine, prompts, params, level, counts[level]))
            rows.append(row("engine", level, measured))
    finally:
        engine.stop(60)
    generate_load(loaded.model, tok, prompts, args.max_tokens, 1, 1)  # warm-up
    for level in LEVELS:
        measured = generate_load(loaded.model, tok, prompts, args.max_tokens, level, counts[level])
        rows.append(row("generate", level, measured))
    return rows, loaded


def print_report(rows: list[dict], result, loaded, args, seconds: float, budget: float) -> dict:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gpu-check on {args.device}: engine vs one generate() per request")
    for col in ("conc.", "side", "requests", "out tokens", "tok/s", "p50 s", "ratio"):
        table.add_column(col, justify="right")
    ratios = {}
    for level in LEVELS:
        ours, base = (
            next(r for r in rows if r["side"] == s and r["concurrency"] == level)
            for s in ("engine", "generate")
        )
        ratios[level] = ours["tokens_per_s"] / max(base["tokens_per_s"], 1e-9)
        for r in (base, ours):
            ratio = f"{ratios[level]:.2f}x" if r is ours else ""
            table.add_row(
                str(level),
                r["side"],
                str(r["requests"]),
                str(r["output_tokens"]),
                f"{r['tokens_per_s']:.1f}",
                f"{r['p50_s']:.3f}",
                ratio,
            )
    console = Console()
    console.print(table)
    extra = result.extra
    console.print(
        f"training precision {extra['precision']}: {extra['precision_reason']}; serving dtype "
        f"{str(loaded.dtype).removeprefix('torch.')}: {loaded.precision_reason}"
    )
    console.print(f"gpu-check took {seconds:.0f} s (budget {budget:.0f} s)")
    return {"rows": rows, "ratios": {str(k): v for k, v in ratios.items()}}


def run_check(args, started: float, budget: float) -> int:
    """Fine-tune, serve, compare, report; 1 when the run took longer than ``budget``."""
    from tuneops.core.io import atomic_write_json

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result = finetune(args, work)
    rows, loaded = serve_and_compare(args, result.merged_dir)
    seconds = time.perf_counter() - started
    report = print_report(rows, result, loaded, args, seconds, budget)
    report.update(
        device=args.device,
        steps=result.global_step,
        train_seconds=result.train_seconds,
        train_tokens_per_s=result.tokens_per_s,
        eval_loss_before=result.eval_loss_before,
        eval_loss_after=result.eval_loss_after,
        precision=result.extra["precision"],
        precision_reason=result.extra["precision_reason"],
        serving_dtype=str(loaded.dtype).removeprefix("torch."),
        serving_dtype_reason=loaded.precision_reason,
        max_tokens=args.max_tokens,
        seconds=seconds,
    )
    atomic_write_json(work / "gpu_check.json", report)
    print(f"results in {work / 'gpu_check.json'}")
    return 0 if seconds <= budget else 1
