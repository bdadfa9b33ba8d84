"""Prometheus metrics of the model server, on top of KServe's own (same /metrics endpoint).

They live in prometheus_client's default registry, which KServe's /metrics handler exposes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)

REQUESTS = Counter(
    "tuneops_serve_requests_total",
    "HTTP requests by route and status code.",
    ["route", "status"],
)
LATENCY = Histogram(
    "tuneops_serve_request_latency_seconds",
    "Time from request arrival to the last byte of the response.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "tuneops_serve_time_to_first_token_seconds",
    "Time from a generation request entering the queue to its first generated token.",
    buckets=_TTFT_BUCKETS,
)
TOKENS_GENERATED = Counter(
    "tuneops_serve_generated_tokens_total", "Tokens generated, over all requests."
)
PROMPT_TOKENS = Counter("tuneops_serve_prompt_tokens_total", "Prompt tokens admitted.")
BATCH_SIZE = Histogram(
    "tuneops_serve_batch_size",
    "Sequences decoded together per forward pass.",
    buckets=_BATCH_BUCKETS,
)
QUEUE_DEPTH = Gauge("tuneops_serve_queue_depth", "Requests waiting for a batch slot.")
RUNNING = Gauge("tuneops_serve_running_sequences", "Sequences holding a batch slot now.")
IN_FLIGHT = Gauge("tuneops_serve_in_flight_requests", "HTTP requests being handled now.")
PROMPTS_SAMPLED = Counter(
    "tuneops_serve_prompts_sampled_total", "Prompts written to the drift sample log."
)
PROMPTS_DROPPED = Counter(
    "tuneops_serve_prompts_dropped_total",
    "Sampled prompts dropped because the drift log writer fell behind.",
)
