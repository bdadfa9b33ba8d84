"""Benchmark: the project's model server against a one-generate-per-request FastAPI baseline.

Both serve the same model (the embedded default), in the same dtype (the one the server's
``dtype: auto`` picks on this machine, or ``--dtype``; printed with the reason and recorded in
the results), with the same torch thread count, on 127.0.0.1. The baseline is the plain way to
put a model behind HTTP: a FastAPI endpoint that calls ``model.generate`` once per request
(FastAPI runs it on its thread pool, so concurrent requests run concurrent, unbatched generate
calls). The project's server is started with ``ServerProcess`` exactly as deployed and asked
over ``/openai/v1``.

A fixed prompt set is sent greedily at concurrency 1, 8 and 32 by closed-loop clients; for each
level the script reports requests/s, output tokens/s, p50/p99 latency and errors, then the
ratios server/baseline. Goal: >= 4x output tokens/s at 32, no worse p50 at 1, zero errors.

    make bench-serve                      # or: python scripts/bench_serve.py --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "How do I roll back a Kubernetes Deployment to its previous revision?",
    "What does terraform plan do before terraform apply?",
    "How do I list every Helm release in all namespaces?",
    "What is the difference between a Kubernetes Service and an Ingress?",
    "How does Argo CD detect that an application is out of sync?",
    "Why would a pod stay in CrashLoopBackOff?",
    "How do I store Terraform state in S3 with locking?",
    "What is a Helm values file used for?",
    "How do I scale a Deployment to five replicas with kubectl?",
    "What does a Kubernetes readiness probe do?",
    "How do I register a model version in MLflow?",
    "What is a node pool in EKS?",
    "How do I upgrade a Helm release and keep its values?",
    "What is GitOps in one paragraph?",
    "How do I see why a Terraform apply failed?",
    "What is a PersistentVolumeClaim?",
]
LEVELS = (1, 8, 32)


# ---- the baseline server (run as a child process of this script) -------------------------
class Ask(BaseModel):
    prompt: str
    max_tokens: int


def baseline_app(model_dir: str, threads: int, dtype: str):
    import torch
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/generate")
    def generate(ask: Ask) -> dict:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": ask.prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **ids,
                max_new_tokens=ask.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        return {
            "text": tokenizer.decode(new, skip_special_tokens=True),
            "completion_tokens": int((new != tokenizer.eos_token_id).sum()),
        }

    return app


def run_baseline(port: int, model_dir: str, threads: int, dtype: str) -> None:
    import uvicorn

    app = baseline_app(model_dir, threads, dtype)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---- load generation ---------------------------------------------------------------------
async def drive(url: str, body_for, tokens_of, concurrency: int, total: int, progress) -> dict:
    import httpx

    latencies: list[float] = []
    tokens = 0
    errors = 0
    next_index = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens, errors, next_index
        while next_index < total:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                reply = await client.post(url, json=body_for(PROMPTS[index % len(PROMPTS)]))
                reply.raise_for_status()
                tokens += tokens_of(reply.json())
                latencies.append(time.perf_counter() - started)
            except Exception:
                errors += 1
            progress()

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=900, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "tokens": tokens, "errors": errors, "wall_s": wall}


def merge(parts: list[dict], concurrency: int) -> dict:
    """One row from the rounds of a level: throughput over their summed wall time."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    wall = sum(p["wall_s"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "concurrency": concurrency,
        "requests": len(latencies) + sum(p["errors"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        "output_tokens_per_s": tokens / wall,
        "p50_s": statistics.median(latencies) if latencies else 0.0,
        "p99_s": pct(0.99),
        "output_tokens": tokens,
    }


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the baseline server exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit("the baseline server did not become ready")


def parse_args() -> argparse.Namespace:
    from workloads.models.refs import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument(
        "--requests",
        type=int,
        nargs=3,
        default=(24, 16, 32),
        metavar=("AT1", "AT8", "AT32"),
        help="requests sent at concurrency 1, 8 and 32",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--output", default=None, help="JSON results (default .cache/bench)")
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: auto)")
    parser.add_argument(
        "--set",
        dest="server_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server config override, repeatable (e.g. cpu_prepack=false)",
    )
    return parser.parse_args()


def pick_precision(asked: str | None):
    """The precision the server's ``dtype: auto`` picks here (or ``--dtype``), with its reason."""
    from tuneops.core.errors import UserError
    from workloads.models.precision import choose_precision, pick_device

    try:
        return choose_precision(asked or "auto", pick_device("auto"))
    except UserError as exc:
        raise SystemExit(str(exc)) from exc


def start_baseline(port: int, model_dir: str, threads: int, dtype: str) -> subprocess.Popen:
    """This script again, as the baseline server on ``port``."""
    command = [sys.executable, __file__, "--baseline-server", str(port), "--model-dir", model_dir]
    command += ["--threads", str(threads), "--dtype", dtype]
    return subprocess.Popen(command)


def sides(baseline_port: int, server_openai_url: str, max_tokens: int) -> dict[str, tuple]:
    """Per side: the URL asked, the body for a prompt, and the output tokens of a reply."""
    return {
        "baseline": (
            f"http://127.0.0.1:{baseline_port}/generate",
            lambda p: {"prompt": p, "max_tokens": max_tokens},
            lambda r: r["completion_tokens"],
        ),
        "server": (
            f"{server_openai_url}/chat/completions",
            lambda p: {
                "model": "cloudops-assistant",
                "messages": [{"role": "user", "content": p}],
                "max_tokens": max_tokens,
                "temperature": 0,
            },
            lambda r: r["usage"]["completion_tokens"],
        ),
    }


def measure(targets: dict[str, tuple], counts: dict[int, int]) -> dict[str, list[dict]]:
    """One row per level and side, with both servers up and the sides taking turns."""
    from tqdm import tqdm

    # Both stay up, idle, while the other is measured; the levels alternate between them so
    # a change in background load hits both sides alike.
    for url, body_for, tokens_of in targets.values():  # warm-up: first-call costs
        asyncio.run(drive(url, body_for, tokens_of, 1, 1, lambda: None))
    results: dict[str, list[dict]] = {side: [] for side in targets}
    total = 2 * sum(counts.values())
    with tqdm(total=total, desc="requests", unit="req") as bar:
        for level in LEVELS:
            # Each level runs in rounds that alternate between the sides (at least one
            # full wave of `level` requests per round), so both see the same background.
            rounds = max(1, counts[level] // max(level, 2))
            per_round = counts[level] // rounds
            parts: dict[str, list[dict]] = {side: [] for side in targets}
            for _ in range(rounds):
                for side, (url, body_for, tokens_of) in targets.items():
                    bar.set_postfix_str(f"{side} @ {level}")
                    parts[side].append(
                        asyncio.run(drive(url, body_for, tokens_of, level, per_round, bar.update))
                    )
            for side in targets:
                results[side].append(merge(parts[side], level))
    return results


def ratios_of(results: dict[str, list[dict]]) -> list[dict]:
    """Server over baseline at each level: output tokens/s and p50 latency."""
    ratios = []
    for i, level in enumerate(LEVELS):
        base, ours = results["baseline"][i], results["server"][i]
        ratios.append(
            {
                "concurrency": level,
                "tokens_per_s_ratio": ours["output_tokens_per_s"]
                / max(base["output_tokens_per_s"], 1e-9),
                "p50_ratio": ours["p50_s"] / max(base["p50_s"], 1e-9),
            }
        )
    return ratios


def results_table(title: str, results: dict[str, list[dict]], ratios: list[dict]):
    from rich.table import Table

    table = Table(title=title)
    for col in ("conc.", "side", "req/s", "out tok/s", "p50 s", "p99 s", "errors"):
        table.add_column(col, justify="right")
    for i, (level, ratio) in enumerate(zip(LEVELS, ratios, strict=True)):
        for side in ("baseline", "server"):
            row = results[side][i]
            table.add_row(
                str(level),
                side,
                f"{row['requests_per_s']:.2f}",
                f"{row['output_tokens_per_s']:.1f}",
                f"{row['p50_s']:.2f}",
                f"{row['p99_s']:.2f}",
                str(row["errors"]),
            )
        table.add_row(
            str(level),
            "[bold]ratio",
            "",
            f"[bold]{ratio['tokens_per_s_ratio']:.2f}x",
            f"{ratio['p50_ratio']:.2f}x",
            "",
            "",
        )
    return table


def run_bench(args: argparse.Namespace, console) -> tuple[dict, int, Any]:
    """Start both servers, measure them, stop them: (results, threads, precision)."""
    from tuneops.core.process import free_port
    from workloads.models import resolve_model
    from workloads.serve.config import cpu_threads
    from workloads.serve.process import ServerProcess

    model_dir = str(resolve_model(args.model))
    threads = cpu_threads(0)
    precision = pick_precision(args.dtype)
    dtype = precision.dtype_name  # given to both sides
    console.print(f"dtype {dtype}: {precision.reason}")
    counts = dict(zip(LEVELS, args.requests, strict=True))
    port = free_port()
    console.print(
        f"baseline: FastAPI + generate() per request on :{port} ({threads} threads, {dtype})"
    )
    baseline = start_baseline(port, model_dir, threads, dtype)
    server = ServerProcess(
        model_dir, overrides=[f"dtype={dtype}", f"cpu_threads={threads}", *args.server_set]
    )
    targets = sides(port, server.openai_url, args.max_tokens)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", baseline)
        console.print(f"server: tuneops serve --model {args.model} (same dtype and threads)")
        server.start()
        results = measure(targets, counts)
    finally:
        server.stop()
        baseline.terminate()
        baseline.wait(60)
    return results, threads, precision


def main() -> int:
    args = parse_args()
    if args.baseline_server:
        run_baseline(args.baseline_server, args.model_dir, args.threads, args.dtype)
        return 0

    from rich.console import Console

    from tuneops.core.io import atomic_write_json
    from tuneops.core.paths import cache_dir

    console = Console()
    results, threads, precision = run_bench(args, console)
    ratios = ratios_of(results)
    title = f"bench-serve: {args.model}, {args.max_tokens} max tokens, greedy"
    console.print(results_table(title, results, ratios))
    at1, at32 = ratios[0], ratios[-1]
    errors = sum(r["errors"] for side in results.values() for r in side)
    goal = at32["tokens_per_s_ratio"] >= 4 and at1["p50_ratio"] <= 1.0 and errors == 0
    output = Path(args.output or cache_dir() / "bench" / "serve.json")
    atomic_write_json(
        output,
        {
            "results": results,
            "ratios": ratios,
            "threads": threads,
            "dtype": precision.dtype_name,
            "dtype_reason": precision.reason,
            "max_tokens": args.max_tokens,
            "server_overrides": args.server_set,
            "goal_met": goal,
        },
    )
    console.print(
        f"server vs baseline ({precision.dtype_name}): {at32['tokens_per_s_ratio']:.1f}x output "
        f"tokens/s at 32, p50 at 1 {at1['p50_ratio']:.2f}x, {errors} errors: goal "
        f"{'met' if goal else 'NOT met'} (results in {output})"
    )
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
