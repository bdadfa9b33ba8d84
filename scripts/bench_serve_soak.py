"""The soak of ``scripts/bench_serve.py``: the server under steady mixed load for a bounded time.

A server of its own (same model, dtype, threads and ``--set`` as the comparison, the per-client
limit as configured) takes ``--soak-concurrency`` (64) closed-loop clients for
``--soak-seconds`` (300), after ``--soak-warmup-seconds`` (30) of the same load. The clients
send streaming and non-streaming chat and completions requests with a share of bad ones
(``bench_serve_soak_load``). The per-client limit counts requests by client address, so the
clients are spread over ``--soak-addresses`` (16) loopback addresses, 127.0.0.10 on, a few per
address: all on 127.0.0.1 they would be one client, and the soak would test the limit.

Reported: requests by kind and status, the 5xx count, p50/p99 latency and output tokens/s of
the good requests, the server process's resident memory (``VmRSS`` of
``/proc/<pid>/status``) when the soak starts (after the warm-up) and when it ends, and the
server's own view from ``/metrics``: its request counts, and its queue-depth, running and
in-flight gauges, which must be back to 0 once the clients are done.

    python scripts/bench_serve.py --soak-only --soak-seconds 30
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

from bench_serve_load import client_addresses
from bench_serve_soak_load import EXPECTED_BAD, GOOD, SCHEDULE, SoakClients, Tally

MAX_RSS_GROWTH = 0.10  # the server's RSS at the end over its RSS after the warm-up, minus one
RSS_EVERY_S = 5.0  # how often the server's RSS is sampled during the soak
GAUGES = {
    "queue_depth": "tuneops_serve_queue_depth",
    "running": "tuneops_serve_running_sequences",
    "in_flight": "tuneops_serve_in_flight_requests",
}
METRICS = "/metrics"  # the scrapes' own requests are left out of the server's counts
SETTLE_S = 10.0  # how long the gauges may take to come back to 0 after the last client


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``, from ``VmRSS`` in ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # in kB
    raise SystemExit(f"no VmRSS for process {pid}: it has exited")


def scrape(server) -> dict:
    """The server's view from ``/metrics``: its gauges (the in-flight one less this scrape
    itself), its requests by status and its generated tokens."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}{METRICS}", headers=server.headers, trust_env=False).text
    values: dict = {"by_status": Counter(), "generated_tokens": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tuneops_serve_requests_total" and sample.labels["route"] != METRICS:
                values["by_status"][sample.labels["status"]] += int(sample.value)
            elif sample.name == "tuneops_serve_generated_tokens_total":
                values["generated_tokens"] = sample.value
            for key, name in GAUGES.items():
                if sample.name == name:
                    values[key] = int(sample.value)
    values["in_flight"] -= 1  # the /metrics request being answered counts itself
    return values


def settled_view(server) -> dict:
    """The server's view once its gauges are all 0, or as it stands after ``SETTLE_S``."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        view = scrape(server)
        if not any(view[key] for key in GAUGES) or time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid``, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def soak_with_rss(clients: SoakClients, seconds: float, pid: int, progress) -> tuple:
    """The soak, with the server's RSS sampled every ``RSS_EVERY_S``: (tally, samples, CPU
    seconds of the server and of the clients over the soak)."""
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    cpu = (cpu_seconds(pid), time.process_time())

    async def sample() -> None:
        while True:
            samples.append((round(time.monotonic() - started, 1), rss_bytes(pid)))
            await asyncio.sleep(RSS_EVERY_S)

    sampler = asyncio.create_task(sample())
    try:
        tally = await clients.run(seconds, progress)
    finally:
        sampler.cancel()
    used = {"server": cpu_seconds(pid) - cpu[0], "clients": time.process_time() - cpu[1]}
    return tally, samples, used


def by_kind(counts: Counter) -> dict[str, dict[str, int]]:
    """``{"chat 200": 5, ...}`` as ``{"chat": {"200": 5}, ...}``, kinds in schedule order."""
    table: dict[str, dict[str, int]] = {kind: {} for kind in dict.fromkeys(SCHEDULE)}
    for key, n in sorted(counts.items()):
        kind, _, status = key.partition(" ")
        table[kind][status] = n
    return table


def misanswered(table: dict[str, dict[str, int]]) -> list[str]:
    """Kinds that got a status other than theirs: a good request anything but a whole 200, a
    bad one another HTTP status (a reset connection on an oversized body is allowed)."""
    missed = []
    for kind, answers in table.items():
        if kind in GOOD:
            wrong = set(answers) - {"200"}
        else:
            wrong = {s for s in answers if s.isdigit() or kind != "oversize"} - {EXPECTED_BAD[kind]}
        if wrong:
            missed.append(kind)
    return missed


def good_summary(tally: Tally) -> dict:
    """Latency percentiles and output tokens/s of the good requests, overall and by kind."""
    from workloads.evaluate.metrics import percentile

    def row(latencies: list[float]) -> dict:
        if not latencies:
            return {"requests": 0, "p50_s": 0.0, "p99_s": 0.0}
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        return {"requests": len(latencies), "p50_s": p50, "p99_s": p99}

    every = [x for kind in GOOD for x in tally.latencies[kind]]
    return {
        **row(every),
        "output_tokens": tally.tokens,
        "output_tokens_per_s": tally.tokens / max(tally.wall_s, 1e-9),
        "requests_per_s": len(every) / max(tally.wall_s, 1e-9),
        "by_kind": {kind: row(tally.latencies[kind]) for kind in GOOD},
    }


def statuses_of(counts: Counter) -> dict[str, int]:
    totals: Counter = Counter()
    for key, n in counts.items():
        totals[key.partition(" ")[2]] += n
    return dict(sorted(totals.items()))


def summarize(warmup: Tally, tally: Tally, seen: dict) -> dict:
    """The soak's figures (without its settings): see the module's docstring. ``seen`` holds
    what was read of the server: ``views`` from /metrics before and after, ``rss`` (bytes at
    rest before and after, samples during), ``cpu`` seconds."""
    start, end = seen["views"]
    table = by_kind(tally.counts)
    status = statuses_of(tally.counts)
    warm_status = statuses_of(warmup.counts)
    five = sum(n for s, n in [*status.items(), *warm_status.items()] if s.startswith("5"))
    rss_start, rss_end, samples = seen["rss"]
    server_counts = end["by_status"] - start["by_status"]
    return {
        "requests": sum(tally.counts.values()),
        "wall_s": tally.wall_s,
        "by_kind": table,
        "by_status": status,
        "server_errors": five,
        "kinds_not_answered_as_expected": misanswered(table),
        "good": good_summary(tally),
        "warmup": {"requests": sum(warmup.counts.values()), "by_status": warm_status},
        "cpu_s": seen["cpu"],
        "rss": {
            "start_bytes": rss_start,
            "end_bytes": rss_end,
            "peak_bytes": max(b for _, b in [*samples, (0, rss_start), (0, rss_end)]),
            "growth": rss_end / rss_start - 1,
            "samples": samples,
        },
        "server_view": {
            "end_gauges": {key: end[key] for key in GAUGES},
            "requests_by_status": dict(sorted(server_counts.items())),
            "generated_tokens": end["generated_tokens"] - start["generated_tokens"],
        },
    }


def soak_server(args, server, clients: SoakClients) -> dict:
    """Warm the server up, then soak it; its RSS is read at rest after the warm-up (the
    start) and once the soak is over and its gauges are back to 0 (the end)."""
    from tqdm import tqdm

    with tqdm(desc="soak warm-up", unit="req", mininterval=5) as bar:
        warmup = asyncio.run(clients.run(args.soak_warmup_seconds, bar.update))
    pid = server.proc.pid
    start, rss_start = scrape(server), rss_bytes(pid)
    with tqdm(desc="soak", unit="req", mininterval=5) as bar:
        load = soak_with_rss(clients, args.soak_seconds, pid, bar.update)
        tally, samples, cpu = asyncio.run(load)
    end = settled_view(server)
    seen = {"views": (start, end), "rss": (rss_start, rss_bytes(pid), samples), "cpu": cpu}
    return summarize(warmup, tally, seen)


def run_soak(args, console, model_dir: str, overrides: list[str], token: str) -> dict:
    """Start a server, warm it up, soak it, stop it: the summary with its settings."""
    from workloads.serve.config import load_serve_config
    from workloads.serve.process import ServerProcess

    limits = load_serve_config(overrides=overrides).limits
    addresses = client_addresses(args.soak_addresses)
    console.print(
        f"soak: {args.soak_concurrency} clients for {args.soak_seconds:g} s (after "
        f"{args.soak_warmup_seconds:g} s of warm-up) over {len(addresses)} loopback addresses "
        f"({addresses[0]}-{addresses[-1]}, up to {-(-args.soak_concurrency // len(addresses))} "
        f"clients each) against limits.max_in_flight_per_client={limits.max_in_flight_per_client}"
    )
    server = ServerProcess(model_dir, overrides=overrides, token=token)
    try:
        server.start()
        clients = SoakClients(
            server.openai_url,
            server.headers,
            addresses,
            args.soak_concurrency,
            limits,
            args.max_tokens,
        )
        summary = soak_server(args, server, clients)
    finally:
        server.stop()
    settings = {
        "seconds": args.soak_seconds,
        "warmup_s": args.soak_warmup_seconds,
        "concurrency": args.soak_concurrency,
        "addresses": len(addresses),
        "max_in_flight_per_client": limits.max_in_flight_per_client,
        "max_body_bytes": limits.max_body_bytes,
        "max_tokens": args.max_tokens,
    }
    return {**settings, **summary}
