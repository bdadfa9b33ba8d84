"""Tables and goals of ``scripts/bench_serve.py``: ratios, the run under abuse, pass/fail."""

from __future__ import annotations

LEVELS = (1, 8, 32)
# The goals bench-serve holds the server to.
MIN_RATIO_AT_32 = 4.0  # output tokens/s, server over baseline, at concurrency 32
MAX_P50_RATIO_AT_1 = 1.0  # p50 latency, server over baseline, at concurrency 1
MIN_ABUSE_RATIO = 0.90  # well-behaved clients' tokens/s with the abuser over without


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


def _row(label: str, side: str, row: dict) -> list[str]:
    return [
        label,
        side,
        f"{row['requests_per_s']:.2f}",
        f"{row['output_tokens_per_s']:.1f}",
        f"{row['p50_s']:.2f}",
        f"{row['p99_s']:.2f}",
        str(row["errors"]),
    ]


def _table(title: str):
    from rich.table import Table

    table = Table(title=title)
    for col in ("conc.", "side", "req/s", "out tok/s", "p50 s", "p99 s", "errors"):
        table.add_column(col, justify="right")
    return table


def results_table(title: str, results: dict[str, list[dict]], ratios: list[dict]):
    table = _table(title)
    for i, (level, ratio) in enumerate(zip(LEVELS, ratios, strict=True)):
        for side in ("baseline", "server"):
            table.add_row(*_row(str(level), side, results[side][i]))
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


def abuse_tables(abuse: dict) -> list:
    """The well-behaved clients with and without the abuser; what the abuser got, by kind."""
    from rich.table import Table

    clients = _table(
        f"run under abuse: {abuse['clients']} well-behaved clients, each on its own address; "
        f"limits.max_in_flight_per_client={abuse['abuser']['max_in_flight_per_client']}"
    )
    clients.add_row(*_row(str(abuse["clients"]), "alone", abuse["alone"]))
    clients.add_row(*_row(str(abuse["clients"]), "with abuser", abuse["abused"]))
    clients.add_row("", "[bold]ratio", "", f"[bold]{abuse['ratio']:.3f}x", "", "", "")
    by_kind = abuse["abuser"]["by_kind"]
    statuses = sorted({s for counts in by_kind.values() for s in counts})
    hits = Table(title="the abuser (127.0.0.2, one connection pool): requests by status")
    hits.add_column("kind")
    for status in statuses:
        hits.add_column(status, justify="right")
    for kind, counts in by_kind.items():
        hits.add_row(kind, *(str(counts.get(s, "")) for s in statuses))
    return [clients, hits]


def goals(ratios: list[dict], errors: int, abuse: dict | None) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for every goal of bench-serve."""
    at1, at32 = ratios[0], ratios[-1]
    rows = [
        (
            f"output tokens/s at 32 >= {MIN_RATIO_AT_32:g}x the baseline",
            f"{at32['tokens_per_s_ratio']:.2f}x",
            at32["tokens_per_s_ratio"] >= MIN_RATIO_AT_32,
        ),
        (
            "p50 latency at 1 no worse than the baseline",
            f"{at1['p50_ratio']:.2f}x",
            at1["p50_ratio"] <= MAX_P50_RATIO_AT_1,
        ),
        ("no failed request, either side", str(errors), errors == 0),
    ]
    if abuse is not None:
        hit = abuse["abuser"]
        missed = hit["kinds_not_refused_as_expected"]
        resets = ", ".join(f"{n} reset on {kind}" for kind, n in hit["transport_errors"].items())
        failed = abuse["alone"]["errors"] + abuse["abused"]["errors"]
        rows += [
            (
                f"under abuse: well-behaved tokens/s >= {MIN_ABUSE_RATIO:.2f}x of alone",
                f"{abuse['ratio']:.3f}x",
                abuse["ratio"] >= MIN_ABUSE_RATIO,
            ),
            (
                "under abuse: no 5xx to the abuser",
                str(hit["server_errors"]),
                not hit["server_errors"],
            ),
            ("under abuse: no failed well-behaved request", str(failed), failed == 0),
            (
                "under abuse: every abusive kind got its 413/400/401/429 and no other status",
                (", ".join(missed) or "all") + (f" ({resets})" if resets else ""),
                not missed,
            ),
        ]
    return rows


def goals_table(rows: list[tuple[str, str, bool]]):
    from rich.table import Table

    table = Table(title="goals")
    table.add_column("goal")
    table.add_column("measured", justify="right")
    table.add_column("result")
    for goal, measured, met in rows:
        table.add_row(goal, measured, "[green]pass" if met else "[red]FAIL")
    return table


def soak_tables(soak: dict) -> list:
    """The soak's requests by kind and status, and its good requests' latency by kind."""
    from bench_serve_soak_load import EXPECTED_BAD
    from rich.table import Table

    table = soak["by_kind"]
    statuses = sorted({s for answers in table.values() for s in answers})
    hits = Table(
        title=f"soak: {soak['requests']} requests in {soak['wall_s']:.0f} s at concurrency "
        f"{soak['concurrency']}, by kind and status"
    )
    hits.add_column("kind")
    hits.add_column("expected", justify="right")
    for status in statuses:
        hits.add_column(status, justify="right")
    for kind, answers in table.items():
        expected = EXPECTED_BAD.get(kind, "200")
        hits.add_row(kind, expected, *(str(answers.get(s, "")) for s in statuses))
    good = soak["good"]
    latency = Table(title="soak: the good requests (latency to the last byte)")
    for col in ("kind", "requests", "p50 s", "p99 s"):
        latency.add_column(col, justify="right")
    for kind, row in good["by_kind"].items():
        latency.add_row(kind, str(row["requests"]), f"{row['p50_s']:.2f}", f"{row['p99_s']:.2f}")
    total = (good["requests"], good["p50_s"], good["p99_s"])
    latency.add_row("[bold]all", str(total[0]), f"[bold]{total[1]:.2f}", f"[bold]{total[2]:.2f}")
    return [hits, latency]


def soak_lines(soak: dict) -> list[str]:
    """Throughput, the server's memory and the server's own view, one line each."""
    good, rss, view = soak["good"], soak["rss"], soak["server_view"]
    mib = 1024 * 1024
    gauges = ", ".join(f"{k} {v}" for k, v in view["end_gauges"].items())
    counted = ", ".join(f"{n} x {s}" for s, n in view["requests_by_status"].items())
    return [
        f"soak: {good['requests_per_s']:.2f} good requests/s, "
        f"{good['output_tokens_per_s']:.1f} output tokens/s ({good['output_tokens']} tokens; "
        f"the server counted {view['generated_tokens']:.0f} generated)",
        f"soak: server RSS at rest {rss['start_bytes'] / mib:.1f} MiB after the warm-up, "
        f"{rss['end_bytes'] / mib:.1f} after the soak ({rss['growth']:+.1%}); peak "
        f"{rss['peak_bytes'] / mib:.1f} under load",
        f"soak: CPU time over the soak: the server {soak['cpu_s']['server']:.0f} s, the "
        f"clients {soak['cpu_s']['clients']:.0f} s (both on this machine's cores)",
        f"soak: the server's /metrics after it: {gauges}; requests it counted: {counted}",
    ]


def soak_goals(soak: dict) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for the soak."""
    from bench_serve_soak import MAX_RSS_GROWTH

    rss, gauges = soak["rss"], soak["server_view"]["end_gauges"]
    missed = soak["kinds_not_answered_as_expected"]
    mib = 1024 * 1024
    return [
        ("soak: no 5xx (warm-up included)", str(soak["server_errors"]), not soak["server_errors"]),
        (
            "soak: every kind got its status (good 200; bad 400/413/401)",
            ", ".join(missed) or "all",
            not missed,
        ),
        (
            f"soak: server RSS growth under {MAX_RSS_GROWTH:.0%} (after warm-up to end)",
            f"{rss['growth']:+.1%} ({rss['start_bytes'] / mib:.0f} -> "
            f"{rss['end_bytes'] / mib:.0f} MiB)",
            rss["growth"] < MAX_RSS_GROWTH,
        ),
        (
            "soak: queue depth, running sequences, in-flight requests back to 0",
            "/".join(str(v) for v in gauges.values()),
            not any(gauges.values()),
        ),
    ]
