"""Benchmark: the project's model server against a one-generate-per-request FastAPI baseline,
then the server under abuse.

Both serve the same model (the embedded default), in the same dtype (the one the server's
``dtype: auto`` picks on this machine, or ``--dtype``; printed with the reason and recorded in
the results), with the same torch thread count, on 127.0.0.1. The baseline is the plain way to
put a model behind HTTP: a FastAPI endpoint that calls ``model.generate`` once per request
(``bench_serve_baseline``). The project's server is started with ``ServerProcess`` exactly as
deployed, with a bearer token, and asked over ``/openai/v1``.

A fixed prompt set is sent greedily at concurrency 1, 8 and 32 by closed-loop clients; for each
level the script reports requests/s, output tokens/s, p50/p99 latency and errors, then the
ratios server/baseline. Then a second server (same model and settings, the per-client
in-flight limit lowered to ``--abuse-client-limit``) takes 32 well-behaved clients, alone and
with one abusive client sending requests it must refuse (``bench_serve_abuse``). Goals, each
printed pass/fail: >= 4x output tokens/s at 32, no worse p50 at 1, zero errors; under abuse
the well-behaved clients keep >= 90% of their tokens/s, the abuser gets no 5xx and every
abusive kind gets its 4xx. Last, a third server takes a bounded soak (``bench_serve_soak``):
``--soak-concurrency`` (64) clients for ``--soak-seconds`` (300), streaming and non-streaming
chat and completions with a share of bad requests; goals: no 5xx, every kind answered with its
status, the server's RSS grown under 10% from after the warm-up to the end, and its queue,
running and in-flight gauges back to 0.

Utilization (``bench_utilization``): the CPU features found and the precision with its reason
come first; this machine's matmul peak is measured before and after the comparison, in the
servers' dtype and torch thread count (the best counts); for each level the server's model
FLOP/s (``workloads.models.flops.generation_flops`` of every reply's prompt and completion
tokens, over the level's wall time) is printed as a fraction of it. Goal: >= 30% at 32.

    make bench-serve                      # or: python scripts/bench_serve.py --max-tokens 48
    python scripts/bench_serve.py --soak-only --soak-seconds 30      # the soak alone, shorter
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_serve_abuse import measure_under_abuse
from bench_serve_baseline import start_baseline, wait_ready
from bench_serve_load import check_loopback_range, drive, merge
from bench_serve_report import (
    LEVELS,
    abuse_tables,
    goals,
    goals_table,
    ratios_of,
    results_table,
    soak_goals,
    soak_lines,
    soak_tables,
)
from bench_serve_soak import run_soak
from bench_utilization import SERVE_GOAL, ReplyFlops, hardware_line, measure_peak, serve_utilization


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
    parser.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: auto)")
    parser.add_argument(
        "--peak-size", type=int, default=2048, help="side of the matrices of the matmul peak"
    )
    parser.add_argument(
        "--set",
        dest="server_set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server config override, repeatable (e.g. cpu_prepack=false)",
    )
    abuse = parser.add_argument_group("the run under abuse")
    abuse.add_argument("--abuse-clients", type=int, default=32, help="well-behaved clients")
    abuse.add_argument("--abuse-requests", type=int, default=64, help="their requests per run")
    abuse.add_argument("--abuse-rounds", type=int, default=3, help="alone/with-abuser pairs")
    abuse.add_argument(
        "--abuse-client-limit",
        type=int,
        default=4,
        help="limits.max_in_flight_per_client of that server",
    )
    abuse.add_argument("--abuse-burst", type=int, default=16, help="requests in one burst")
    abuse.add_argument("--skip-abuse", action="store_true", help="leave the run under abuse out")
    soak = parser.add_argument_group("the soak")
    soak.add_argument("--soak-seconds", type=float, default=300, help="length of the soak")
    soak.add_argument("--soak-warmup-seconds", type=float, default=30, help="load before it")
    soak.add_argument("--soak-concurrency", type=int, default=64, help="clients of the soak")
    soak.add_argument("--soak-addresses", type=int, default=16, help="their loopback addresses")
    only = soak.add_mutually_exclusive_group()
    only.add_argument("--soak-only", action="store_true", help="run the soak and nothing else")
    only.add_argument("--skip-soak", action="store_true", help="leave the soak out")
    args = parser.parse_args()
    if min(args.soak_concurrency, args.soak_addresses) < 1 or args.soak_seconds <= 0:
        parser.error("the soak needs a positive length, at least one client and one address")
    return args


def pick_precision(asked: str | None):
    """The precision the server's ``dtype: auto`` picks here (or ``--dtype``), with its reason."""
    from tuneops.core.errors import UserError
    from workloads.models.precision import choose_precision, pick_device

    try:
        return choose_precision(asked or "auto", pick_device("auto"))
    except UserError as exc:
        raise SystemExit(str(exc)) from exc


def server_target(openai_url: str, max_tokens: int, headers: dict[str, str], tokens_of=None):
    """The URL asked, the body for a prompt, the output tokens of a reply, the headers."""
    return (
        f"{openai_url}/chat/completions",
        lambda p: {
            "model": "cloudops-assistant",
            "messages": [{"role": "user", "content": p}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
        tokens_of or (lambda r: r["usage"]["completion_tokens"]),
        headers,
    )


def sides(baseline_port: int, server, max_tokens: int, flops: ReplyFlops) -> dict[str, tuple]:
    """Per side: the URL asked, the body for a prompt, the output tokens of a reply, headers."""
    return {
        "baseline": (
            f"http://127.0.0.1:{baseline_port}/generate",
            lambda p: {"prompt": p, "max_tokens": max_tokens},
            lambda r: r["completion_tokens"],
            {},
        ),
        "server": server_target(server.openai_url, max_tokens, server.headers, flops.tokens_of),
    }


def measure(
    targets: dict[str, tuple], counts: dict[int, int], flops: ReplyFlops
) -> dict[str, list[dict]]:
    """One row per level and side, with both servers up and the sides taking turns."""
    from tqdm import tqdm

    # Both stay up, idle, while the other is measured; the levels alternate between them so
    # a change in background load hits both sides alike.
    for url, body_for, tokens_of, headers in targets.values():  # warm-up: first-call costs
        asyncio.run(drive(url, body_for, tokens_of, 1, 1, lambda: None, headers=headers))
    results: dict[str, list[dict]] = {side: [] for side in targets}
    total = 2 * sum(counts.values())
    with tqdm(total=total, desc="requests", unit="req") as bar:
        for level in LEVELS:
            flops.level = level
            # Each level runs in rounds that alternate between the sides (at least one
            # full wave of `level` requests per round), so both see the same background.
            rounds = max(1, counts[level] // max(level, 2))
            per_round = counts[level] // rounds
            parts: dict[str, list[dict]] = {side: [] for side in targets}
            for _ in range(rounds):
                for side, (url, body_for, tokens_of, headers) in targets.items():
                    bar.set_postfix_str(f"{side} @ {level}")
                    load = drive(
                        url, body_for, tokens_of, level, per_round, bar.update, headers=headers
                    )
                    parts[side].append(asyncio.run(load))
            for side in targets:
                results[side].append(merge(parts[side], level))
    flops.level = None
    return results


def run_comparison(
    args, console, model_dir: str, threads: int, dtype: str, token: str
) -> tuple[dict, ReplyFlops]:
    """Start the baseline and the server, measure both, stop them; the results, and the model
    FLOPs of the server's replies per level."""
    from tuneops.core.process import free_port
    from workloads.serve.process import ServerProcess

    counts = dict(zip(LEVELS, args.requests, strict=True))
    port = free_port()
    console.print(
        f"baseline: FastAPI + generate() per request on :{port} ({threads} threads, {dtype})"
    )
    baseline = start_baseline(port, model_dir, threads, dtype)
    server = ServerProcess(
        model_dir,
        overrides=[f"dtype={dtype}", f"cpu_threads={threads}", *args.server_set],
        token=token,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/ready", baseline)
        console.print(f"server: tuneops serve --model {args.model} (same dtype and threads)")
        server.start()
        flops = ReplyFlops(model_dir)
        return measure(sides(port, server, args.max_tokens, flops), counts, flops), flops
    finally:
        server.stop()
        baseline.terminate()
        baseline.wait(60)


def run_abuse(args, console, model_dir: str, threads: int, dtype: str, token: str) -> dict:
    """A server with the per-client limit lowered; its well-behaved clients with and without
    the abuser."""
    from workloads.serve.config import load_serve_config
    from workloads.serve.process import ServerProcess

    overrides = [f"dtype={dtype}", f"cpu_threads={threads}", *args.server_set]
    overrides.append(f"limits.max_in_flight_per_client={args.abuse_client_limit}")
    limits = load_serve_config(overrides=overrides).limits
    console.print(
        f"under abuse: {args.abuse_clients} well-behaved clients on 127.0.0.10 on, one each "
        "(the per-client limit counts by address; all on 127.0.0.1 they would be one client), "
        f"the abuser on 127.0.0.2; limits.max_in_flight_per_client={args.abuse_client_limit}"
    )
    server = ServerProcess(model_dir, overrides=overrides, token=token)
    try:
        server.start()
        url, body_for, tokens_of, _ = server_target(
            server.openai_url, args.max_tokens, server.headers
        )
        return measure_under_abuse((url, body_for, tokens_of), server, limits, args)
    finally:
        server.stop()


def run_bench(args: argparse.Namespace, console) -> dict:
    """The runs asked for, by name (``results``, ``abuse``, ``soak``; None when left out),
    with the threads and the precision they ran with."""
    from workloads.models import resolve_model
    from workloads.serve.config import cpu_threads

    comparison = not args.soak_only
    if (comparison and not args.skip_abuse) or not args.skip_soak:
        check_loopback_range()  # before anything slow starts
    model_dir = str(resolve_model(args.model))
    threads = cpu_threads(0)
    precision = pick_precision(args.dtype)
    dtype = precision.dtype_name  # given to both sides
    console.print(hardware_line(precision, threads), markup=False)
    token = secrets.token_urlsafe(32)  # the server always runs with a bearer token
    runs: dict[str, Any] = {"threads": threads, "precision": precision, "results": None}
    if comparison:
        peaks = [measure_peak(precision, threads, args.peak_size)]
        runs["results"], flops = run_comparison(args, console, model_dir, threads, dtype, token)
        peaks.append(measure_peak(precision, threads, args.peak_size))
        runs["utilization"] = serve_utilization(runs["results"], flops, max(peaks), dtype)
    runs["abuse"] = None
    if comparison and not args.skip_abuse:
        runs["abuse"] = run_abuse(args, console, model_dir, threads, dtype, token)
    overrides = [f"dtype={dtype}", f"cpu_threads={threads}", *args.server_set]
    runs["soak"] = None if args.skip_soak else run_soak(args, console, model_dir, overrides, token)
    return runs


def print_abuse(console, abuse: dict) -> None:
    for table in abuse_tables(abuse):
        console.print(table)
    hit = abuse["abuser"]
    statuses = ", ".join(f"{n} x {status}" for status, n in hit["by_status"].items())
    console.print(
        f"the abuser hit: {statuses} (429: its own in-flight limit of "
        f"{hit['max_in_flight_per_client']} on 127.0.0.2; 200: burst requests under it)"
    )
    for kind, n in hit["transport_errors"].items():
        console.print(f"{n} {kind} request(s) ended without an HTTP answer (connection reset)")


def report(args: argparse.Namespace, console, runs: dict) -> list[tuple[str, str, bool]]:
    """Print the tables of the runs that ran; (goal, measured, met) for each of their goals."""
    rows: list[tuple[str, str, bool]] = []
    results, abuse, soak = runs["results"], runs["abuse"], runs["soak"]
    if results is not None:
        runs["ratios"] = ratios = ratios_of(results)
        title = f"bench-serve: {args.model}, {args.max_tokens} max tokens, greedy"
        console.print(results_table(title, results, ratios))
        if abuse is not None:
            print_abuse(console, abuse)
        errors = sum(r["errors"] for side in results.values() for r in side)
        rows += goals(ratios, errors, abuse)
        for used in runs["utilization"]:
            console.print(used.line(), markup=False)
        at32 = runs["utilization"][-1]
        rows.append(
            (
                f"model FLOP/s at {LEVELS[-1]} >= {SERVE_GOAL:.0%} of the matmul peak",
                f"{at32.fraction:.1%}",
                at32.met,
            )
        )
    if soak is not None:
        for table in soak_tables(soak):
            console.print(table)
        for line in soak_lines(soak):
            console.print(line)
        rows += soak_goals(soak)
    return rows


def main() -> int:
    args = parse_args()

    from rich.console import Console

    from tuneops.core.io import atomic_write_json
    from tuneops.core.paths import cache_dir

    console = Console()
    runs = run_bench(args, console)
    rows = report(args, console, runs)
    console.print(goals_table(rows))
    met = all(ok for _, _, ok in rows)
    name = "serve-soak.json" if args.soak_only else "serve.json"
    output = Path(args.output or cache_dir() / "bench" / name)
    precision = runs["precision"]
    atomic_write_json(
        output,
        {
            "results": runs["results"],
            "ratios": runs.get("ratios"),
            "abuse": runs["abuse"],
            "soak": runs["soak"],
            "goals": [{"goal": g, "measured": m, "met": ok} for g, m, ok in rows],
            "threads": runs["threads"],
            "dtype": precision.dtype_name,
            "dtype_reason": precision.reason,
            "utilization": [u.to_json() for u in runs.get("utilization", [])],
            "max_tokens": args.max_tokens,
            "server_overrides": args.server_set,
            "goal_met": met,
        },
    )
    console.print(
        f"bench-serve ({precision.dtype_name}): {sum(ok for *_, ok in rows)} of {len(rows)} "
        f"goals met: {'PASS' if met else 'FAIL'} (results in {output})"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
