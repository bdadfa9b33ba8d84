"""The run under abuse of ``scripts/bench_serve.py``: well-behaved clients with and without an
abusive one.

The abuser is a child process (its own interpreter, so its work does not slow the well-behaved
clients' event loop) with one connection pool bound to 127.0.0.2. It cycles, without pause,
through requests the server must refuse, each kind counted by the status it got:

- ``oversize``: a chat body one byte over ``limits.max_body_bytes`` (413);
- ``prompts``: a completions request with ``limits.max_prompts`` + 1 prompts (400);
- ``tools``, ``n5``: a field the server does not implement, ``n: 5`` (400);
- ``bad_utf8``: a body that is not UTF-8 (400);
- ``bad_token``: a wrong bearer token (401);
- ``burst``: ``burst`` valid one-token requests at once, past
  ``limits.max_in_flight_per_client`` (the ones under the limit are served, 200; the rest
  429). The only work the abuser gets done is those few one-token answers.

The per-client limit counts requests by client address. All loopback traffic would come from
127.0.0.1 and count as one client, so each well-behaved client binds its own address
(127.0.0.10 on, ``bench_serve_load.client_addresses``), as separate users would have.

    python scripts/bench_serve_abuse.py URL --max-body B --max-prompts P --burst N
    (token in $BENCH_SERVE_TOKEN; prints "ready", then on SIGTERM one JSON line of counts)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKEN_ENV = "BENCH_SERVE_TOKEN"
MODEL = "cloudops-assistant"
KINDS = ("oversize", "prompts", "tools", "n5", "bad_utf8", "bad_token", "burst")
EXPECTED = {
    "oversize": "413",
    "prompts": "400",
    "tools": "400",
    "n5": "400",
    "bad_utf8": "400",
    "bad_token": "401",
}


def chat(content: str = "hi", **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def abusive_requests(max_body: int, max_prompts: int) -> dict[str, tuple[str, dict]]:
    """Per kind (but ``burst``): the path under /openai/v1 and the keyword arguments of the
    ``httpx`` call. Bodies are built once, as bytes."""
    pad = b"x" * max_body
    oversize = b'{"model":"%s","messages":[{"role":"user","content":"%s"}]}' % (MODEL.encode(), pad)
    many = {"model": MODEL, "prompt": ["hi"] * (max_prompts + 1), "max_tokens": 1}
    bad_utf8 = b'{"model":"%s","messages":[{"role":"user","content":"\xff\xfe"}]}' % MODEL.encode()
    json_type = {"content-type": "application/json"}
    return {
        "oversize": ("/chat/completions", {"content": oversize, "headers": json_type}),
        "prompts": ("/completions", {"json": many}),
        "tools": ("/chat/completions", {"json": chat(tools=[{"type": "function"}])}),
        "n5": ("/chat/completions", {"json": chat(n=5, max_tokens=1)}),
        "bad_utf8": ("/chat/completions", {"content": bad_utf8, "headers": json_type}),
        "bad_token": ("/chat/completions", {"json": chat(max_tokens=1)}),
    }


async def send(client, counts: Counter, kind: str, url: str, token: str, kwargs: dict) -> None:
    """One request; its status (or the transport error) is counted under ``kind``."""
    given = "not-the-token" if kind == "bad_token" else token
    headers = {**kwargs.get("headers", {}), "Authorization": f"Bearer {given}"}
    try:
        reply = await client.post(url, **{**kwargs, "headers": headers})
        counts[f"{kind} {reply.status_code}"] += 1
    except Exception as exc:  # a refused body may end in a reset connection: count it
        counts[f"{kind} {type(exc).__name__}"] += 1


async def abuse(url: str, token: str, requests: dict, burst: int, stop: asyncio.Event) -> Counter:
    """Cycle through every kind until ``stop`` is set; the counts by kind and status."""
    from bench_serve_load import ABUSER_ADDRESS, http_client

    counts: Counter = Counter()
    short = {"json": chat(max_tokens=1, temperature=0)}
    async with http_client(burst + 4, address=ABUSER_ADDRESS) as client:
        print("ready", flush=True)
        while not stop.is_set():
            for kind, (path, kwargs) in requests.items():
                await send(client, counts, kind, url + path, token, kwargs)
            bursts = [
                send(client, counts, "burst", url + "/chat/completions", token, short)
                for _ in range(burst)
            ]
            await asyncio.gather(*bursts)
    return counts


def abuser_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="bench-serve's abusive client")
    parser.add_argument("url", help="the server's /openai/v1 URL")
    parser.add_argument("--max-body", type=int, required=True)
    parser.add_argument("--max-prompts", type=int, required=True)
    parser.add_argument("--burst", type=int, required=True)
    args = parser.parse_args(argv)

    async def run() -> Counter:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        requests = abusive_requests(args.max_body, args.max_prompts)
        return await abuse(args.url, os.environ[TOKEN_ENV], requests, args.burst, stop)

    print(json.dumps(dict(asyncio.run(run()))), flush=True)


class Abuser:
    """The abuser as a child process for the length of a ``with`` block; ``counts`` after."""

    def __init__(self, url: str, token: str, limits, burst: int) -> None:
        self.command = [sys.executable, __file__, url, "--burst", str(burst)]
        self.command += ["--max-body", str(limits.max_body_bytes)]
        self.command += ["--max-prompts", str(limits.max_prompts)]
        self.env = {**os.environ, TOKEN_ENV: token}
        self.counts: Counter = Counter()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Abuser:
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise SystemExit(f"the abusive client did not start (exit {self.proc.wait()})")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise SystemExit("the abusive client did not stop within 120 s") from None
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise SystemExit(f"the abusive client failed (exit {self.proc.returncode})")
        self.counts = Counter(json.loads(lines[-1]))


def by_status(counts: Counter) -> dict[str, dict[str, int]]:
    """``{"oversize 413": 5, ...}`` as ``{"oversize": {"413": 5}, ...}``, kinds in order."""
    table: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for key, n in sorted(counts.items()):
        kind, _, status = key.partition(" ")
        table.setdefault(kind, {})[status] = n
    return table


def abuse_summary(counts: Counter, client_limit: int) -> dict:
    """What the abuser hit: counts by kind and status, 5xx, and whether each kind got the
    refusal it should (and the bursts at least one 429)."""
    table = by_status(counts)
    server_errors = sum(n for key, n in counts.items() if key.split(" ")[1].startswith("5"))
    missed = []
    for kind, status in EXPECTED.items():
        answers = {s for s in table.get(kind, {}) if s.isdigit()}
        if answers != {status}:
            missed.append(kind)
    if "429" not in table.get("burst", {}):
        missed.append("burst")
    totals: Counter = Counter()
    for key, n in counts.items():
        totals[key.split(" ")[1]] += n
    return {
        "by_kind": table,
        "by_status": dict(sorted(totals.items())),
        "server_errors": server_errors,
        # Requests that ended without an HTTP answer (a reset connection), by kind.
        "transport_errors": {
            kind: sum(n for s, n in answers.items() if not s.isdigit())
            for kind, answers in table.items()
            if any(not s.isdigit() for s in answers)
        },
        "kinds_not_refused_as_expected": missed,
        "max_in_flight_per_client": client_limit,
    }


def measure_under_abuse(target: tuple, server, limits, args) -> dict:
    """Rounds of the well-behaved clients alone and with the abuser (the order alternates, so
    a change in background load hits both alike); their rows, the ratio, what the abuser hit."""
    from bench_serve_load import client_addresses, drive, merge
    from tqdm import tqdm

    url, body_for, tokens_of = target
    clients, total = args.abuse_clients, args.abuse_requests
    addresses = client_addresses(clients)

    def run(progress) -> dict:
        load = drive(
            url,
            body_for,
            tokens_of,
            clients,
            total,
            progress,
            headers=server.headers,
            addresses=addresses,
        )
        return asyncio.run(load)

    # Warm-up: one full wave, so first-call costs (kernels for a batch of this size, the
    # clients' connections) fall on neither side.
    asyncio.run(
        drive(
            url,
            body_for,
            tokens_of,
            clients,
            clients,
            lambda: None,
            headers=server.headers,
            addresses=addresses,
        )
    )
    counts: Counter = Counter()
    parts: dict[str, list[dict]] = {"alone": [], "abused": []}
    with tqdm(total=2 * args.abuse_rounds * total, desc="under abuse", unit="req") as bar:
        for index in range(args.abuse_rounds):
            for phase in ("alone", "abused") if index % 2 == 0 else ("abused", "alone"):
                bar.set_postfix_str(phase)
                if phase == "alone":
                    parts[phase].append(run(bar.update))
                    continue
                with Abuser(server.openai_url, server.token, limits, args.abuse_burst) as abuser:
                    parts[phase].append(run(bar.update))
                counts += abuser.counts
    alone, abused = merge(parts["alone"], clients), merge(parts["abused"], clients)
    return {
        "clients": clients,
        "alone": alone,
        "abused": abused,
        "ratio": abused["output_tokens_per_s"] / max(alone["output_tokens_per_s"], 1e-9),
        "abuser": abuse_summary(counts, limits.max_in_flight_per_client),
    }


if __name__ == "__main__":
    abuser_main(sys.argv[1:])
