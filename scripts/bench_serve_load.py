"""Load generation for ``scripts/bench_serve.py``: closed-loop clients and their summary rows.

``drive`` runs ``concurrency`` clients that each send one request at a time until ``total``
requests have gone out. By default they share one connection pool from 127.0.0.1; given
``addresses``, each client binds its own loopback source address (127.0.0.0/8 is loopback on
Linux), so a server that counts requests per client address sees one client per address, as
it would see separate users.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable

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
# Client source addresses of the run under abuse: the abuser, then one per well-behaved client.
ABUSER_ADDRESS = "127.0.0.2"
FIRST_CLIENT_HOST = 10


def client_addresses(count: int) -> list[str]:
    """``count`` loopback source addresses, one per well-behaved client: 127.0.0.10 on."""
    if FIRST_CLIENT_HOST + count > 255:
        raise SystemExit(f"at most {255 - FIRST_CLIENT_HOST} clients have their own address")
    return [f"127.0.0.{FIRST_CLIENT_HOST + i}" for i in range(count)]


def check_loopback_range() -> None:
    """One clear line when this machine cannot bind loopback addresses other than 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ABUSER_ADDRESS, 0))
        except OSError as exc:
            raise SystemExit(
                f"the run under abuse and the soak give clients their own loopback addresses, and "
                f"{ABUSER_ADDRESS} cannot be bound here ({exc.strerror}); it needs the whole "
                "127.0.0.0/8 range on the loopback interface, as Linux has"
            ) from exc


def http_client(connections: int, *, address: str | None = None, headers=None):
    """An ``httpx.AsyncClient`` for loopback load (no proxies from the environment), bound to
    ``address`` when one is given."""
    import httpx

    transport = httpx.AsyncHTTPTransport(
        local_address=address, limits=httpx.Limits(max_connections=connections)
    )
    return httpx.AsyncClient(
        timeout=900, transport=transport, headers=headers or {}, trust_env=False
    )


async def drive(
    url: str,
    body_for: Callable[[str], dict],
    tokens_of: Callable[[dict], int],
    concurrency: int,
    total: int,
    progress: Callable[[], object],
    *,
    headers: dict[str, str] | None = None,
    addresses: list[str] | None = None,
) -> dict:
    """Closed-loop clients: latencies of the requests that succeeded, output tokens, errors."""
    latencies: list[float] = []
    tokens = 0
    errors = 0
    next_index = 0

    async def worker(client) -> None:
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

    if addresses:
        clients = [http_client(2, address=a, headers=headers) for a in addresses[:concurrency]]
    else:
        clients = [http_client(concurrency + 4, headers=headers)]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
        wall = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
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
