"""The requests of the soak in ``scripts/bench_serve_soak.py`` and the clients that send them.

Every client sends one request at a time, back to back, until the soak's deadline; the kind of
each request comes from ``SCHEDULE`` in turn, so the mix is the same on every run:

- good requests, whose latency and output tokens are measured: ``chat`` and ``completion``,
  whole (``usage.completion_tokens``) or streamed (``chat_stream``, ``completion_stream``,
  with ``stream_options.include_usage``; a stream counts as answered when it ends in
  ``[DONE]`` with no error event). ``max_tokens`` cycles through a quarter, a half, three
  quarters and all of ``--max-tokens``, and every other request samples (temperature 0.8);
- bad requests, each with the one status the server must answer: ``malformed_json`` (400),
  ``oversize`` (a body one byte over ``limits.max_body_bytes``, 413), ``unknown_field`` (a
  field no version of the API has, refused by name: 400), ``unsupported_field``
  (``seed``, which would change the answer and is not implemented: 400), ``bad_token`` (401)
  and ``n5`` (``n: 5``, 400).

A request that ends without an HTTP answer is counted under its error's name (``ReadError``);
on ``oversize`` that is a reset connection (the server answers 413 and closes), listed beside
the 413 rather than counted against it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

from bench_serve_load import PROMPTS, http_client

MODEL = "cloudops-assistant"
GOOD = ("chat", "chat_stream", "completion", "completion_stream")
EXPECTED_BAD = {
    "malformed_json": "400",
    "oversize": "413",
    "unknown_field": "400",
    "unsupported_field": "400",
    "bad_token": "401",
    "n5": "400",
}
# Kinds in the order they are sent: 14 good requests to 6 bad ones, interleaved.
SCHEDULE = (
    "chat",
    "chat_stream",
    "completion",
    "malformed_json",
    "completion_stream",
    "chat",
    "chat_stream",
    "oversize",
    "completion",
    "completion_stream",
    "unknown_field",
    "chat",
    "chat_stream",
    "unsupported_field",
    "completion",
    "completion_stream",
    "bad_token",
    "chat",
    "chat_stream",
    "n5",
)
STREAM_END = "[DONE]"


@dataclass
class Tally:
    """What a stretch of the soak got: statuses by kind, and per good request its latency
    and output tokens."""

    counts: Counter = field(default_factory=Counter)  # "kind status" -> requests
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in GOOD})
    tokens: int = 0
    wall_s: float = 0.0

    def add(self, kind: str, status: str, latency: float, tokens: int) -> None:
        self.counts[f"{kind} {status}"] += 1
        if kind in GOOD and status == "200":
            self.latencies[kind].append(latency)
            self.tokens += tokens


def request_bodies(limits) -> dict[str, tuple[str, dict]]:
    """Per bad kind: the path under /openai/v1 and the keyword arguments of the ``httpx``
    call (bodies built once; the oversized one and ``n: 5`` are those of the run under
    abuse)."""
    from bench_serve_abuse import abusive_requests

    abusive = abusive_requests(limits.max_body_bytes, limits.max_prompts)
    json_type = {"content-type": "application/json"}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return {
        "malformed_json": (
            "/chat/completions",
            {"content": b'{"model": "%s", "messages": [' % MODEL.encode(), "headers": json_type},
        ),
        "oversize": abusive["oversize"],
        "unknown_field": ("/chat/completions", {"json": {**chat, "x_soak_unknown": {"a": [1]}}}),
        "unsupported_field": ("/chat/completions", {"json": {**chat, "seed": 7}}),
        "bad_token": (
            "/chat/completions",
            {"json": chat, "headers": {"Authorization": "Bearer not-the-token"}},
        ),
        "n5": abusive["n5"],
    }


def good_request(kind: str, index: int, max_tokens: int) -> tuple[str, dict]:
    """The path and JSON body of the ``index``-th request, of a good ``kind``."""
    prompt = PROMPTS[index % len(PROMPTS)]
    body: dict = {
        "model": MODEL,
        "max_tokens": max(1, max_tokens * (1 + index % 4) // 4),
        "temperature": 0.8 if index % 2 else 0.0,
    }
    if kind.startswith("chat"):
        path = "/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        path = "/completions"
        body["prompt"] = prompt
    if kind.endswith("_stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return path, body


async def read_stream(reply) -> tuple[str, int]:
    """The status of a streamed answer ("200", or "stream error" / "no [DONE]" when it failed
    after its head) and its output tokens from the usage chunk."""
    tokens, done = 0, False
    async for line in reply.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == STREAM_END:
            done = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            return "stream error", tokens
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    return ("200" if done else "no [DONE]"), tokens


async def send_good(client, url: str, kind: str, index: int, max_tokens: int) -> tuple[str, int]:
    path, body = good_request(kind, index, max_tokens)
    if body.get("stream"):
        async with client.stream("POST", url + path, json=body) as reply:
            if reply.status_code != 200:
                await reply.aread()
                return str(reply.status_code), 0
            return await read_stream(reply)
    reply = await client.post(url + path, json=body)
    if reply.status_code != 200:
        return str(reply.status_code), 0
    return "200", reply.json()["usage"]["completion_tokens"]


class SoakClients:
    """``concurrency`` clients spread over connection pools bound to ``addresses`` (client
    ``i`` uses address ``i % len(addresses)``), sending the schedule until a deadline."""

    def __init__(
        self, url: str, headers: dict, addresses: list[str], concurrency: int, limits, max_tokens
    ) -> None:
        self.url = url
        self.headers = headers
        self.addresses = addresses
        self.concurrency = concurrency
        self.max_tokens = max_tokens
        self.bad = request_bodies(limits)
        self.next_index = 0

    async def _one(self, client, tally: Tally) -> None:
        index = self.next_index
        self.next_index += 1
        kind = SCHEDULE[index % len(SCHEDULE)]
        started = time.perf_counter()
        tokens = 0
        try:
            if kind in GOOD:
                status, tokens = await send_good(client, self.url, kind, index, self.max_tokens)
            else:
                path, kwargs = self.bad[kind]
                status = str((await client.post(self.url + path, **kwargs)).status_code)
        except Exception as exc:  # no HTTP answer (a reset connection): counted by its name
            status = type(exc).__name__
        tally.add(kind, status, time.perf_counter() - started, tokens)

    async def run(self, seconds: float, progress=lambda: None) -> Tally:
        """Every client sends back to back until ``seconds`` have passed; requests under way
        then are finished and counted."""
        tally = Tally()
        per_pool = -(-self.concurrency // len(self.addresses))
        pools = [http_client(per_pool + 2, address=a, headers=self.headers) for a in self.addresses]
        deadline = time.monotonic() + seconds

        async def client_loop(pool) -> None:
            while time.monotonic() < deadline:
                await self._one(pool, tally)
                progress()

        started = time.perf_counter()
        try:
            loops = (client_loop(pools[i % len(pools)]) for i in range(self.concurrency))
            await asyncio.gather(*loops)
        finally:
            tally.wall_s = time.perf_counter() - started
            for pool in pools:
                await pool.aclose()
        return tally
