"""Benchmark: batched evaluation generation vs one prompt at a time.

Baseline: the same model, same greedy decoding and same questions, generated one prompt at a
time (batch size 1), the way a naive evaluation loop asks. Prints both throughputs,
the speed-up ratio, and whether the answers are identical.

    .venv/bin/python scripts/bench_eval.py [--model REF] [--questions 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import time

from workloads.evaluate.config import load_eval_config
from workloads.evaluate.generate import LocalGenerator
from workloads.evaluate.items import benchmark_items
from workloads.models.refs import DEFAULT_MODEL


def measure(ref: str, prompts, batch_size: int, max_new_tokens: int, dtype: str):
    cfg = load_eval_config(
        overrides=[
            f"generation.batch_size={batch_size}",
            f"generation.max_new_tokens={max_new_tokens}",
            f"generation.dtype={dtype}",
        ]
    ).generation
    gen = LocalGenerator(ref, cfg)
    print(f"  precision: {gen.precision} ({gen.precision_reason})")
    gen.generate(prompts[:2])  # warm-up: first-call allocation and kernel selection
    started = time.perf_counter()
    out = gen.generate(prompts)
    seconds = time.perf_counter() - started
    tokens = sum(g.answer_tokens or 0 for g in out)
    return out, seconds, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    args = parser.parse_args()

    cfg = load_eval_config(overrides=[f"benchmark_limit={args.questions}"])
    items, _ = benchmark_items(cfg)
    prompts = [i["prompt"] for i in items]
    runs = {}
    for name, size in (("baseline: one prompt per call", 1), ("batched", args.batch_size)):
        out, seconds, tokens = measure(args.model, prompts, size, args.max_new_tokens, args.dtype)
        runs[name] = (out, seconds, tokens)
        print(f"{name:<32} batch={size:<3} {seconds:7.1f} s  {tokens / seconds:7.1f} tokens/s")
    (base_out, base_s, base_t), (b_out, b_s, b_t) = runs.values()
    same = sum(a.text == b.text for a, b in zip(base_out, b_out, strict=True))
    print(
        f"batched vs baseline: {(b_t / b_s) / (base_t / base_s):.2f}x tokens/s, "
        f"{base_s / b_s:.2f}x wall time; identical answers {same}/{len(prompts)} "
        f"({len(prompts)} questions, max_new_tokens={args.max_new_tokens}, {args.dtype})"
    )


if __name__ == "__main__":
    main()
