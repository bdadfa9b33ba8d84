"""Prompt sampling for drift monitoring.

A configured share of prompts is scrubbed of secrets with the data pipeline's own scrubber
(the same placeholders the training data carries) and appended to a JSONL log, one record per
line: ``{"ts", "route", "prompt", "redactions"}``. A local log is appended line by line; an
``s3://bucket/prefix`` log is written as numbered objects of ``flush_every`` records each (S3
has no append), plus one for the remainder at shutdown. Writing happens on a background
thread, so a slow disk or bucket never delays a request.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from workloads.serve import metrics

log = logging.getLogger(__name__)


def scrub(text: str) -> tuple[str, dict[str, int]]:
    from workloads.data.scrub import scrub_text

    clean, counts = scrub_text(text)
    return clean, dict(counts)


# Prompts waiting for the writer thread; past this, new samples are dropped (and counted) so a
# slow disk or bucket cannot grow the server's memory without bound.
MAX_PENDING = 10_000


class PromptSampler:
    def __init__(
        self,
        rate: float,
        destination: str,
        *,
        flush_every: int = 100,
        seed=None,
        max_pending: int = MAX_PENDING,
    ):
        self.rate = rate
        self.destination = destination
        self.flush_every = flush_every
        self._random = random.Random(seed)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="prompt-sampler", daemon=True)
        self._buffer: list[dict[str, Any]] = []
        self._part = 0
        self._run_id = uuid.uuid4().hex[:8]
        if not destination.startswith("s3://"):
            Path(destination).parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def offer(self, route: str, text: str) -> bool:
        """Record the prompt with probability ``rate``; True when it was taken."""
        if self.rate <= 0 or self._random.random() >= self.rate:
            return False
        # A lone surrogate (valid in a JSON string, not in UTF-8) would make every later upload
        # of the batch fail; it is replaced here, once.
        text = text.encode("utf-8", "replace").decode("utf-8")
        try:
            self._queue.put_nowait({"route": route, "text": text, "ts": time.time()})
        except queue.Full:
            metrics.PROMPTS_DROPPED.inc()
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)  # waits for room: the writer thread is draining
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._flush_s3()
                return
            try:
                self._write(item)
            except Exception:  # a broken log must not break serving; it is logged loudly
                log.exception("could not write a sampled prompt to %s", self.destination)

    def _write(self, item: dict[str, Any]) -> None:
        clean, counts = scrub(item["text"])
        record = {
            "ts": item["ts"],
            "route": item["route"],
            "prompt": clean,
            "redactions": counts,
        }
        if self.destination.startswith("s3://"):
            self._buffer.append(record)
            if len(self._buffer) >= self.flush_every:
                self._flush_s3()
        else:
            line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
            # One write of one line in append mode: concurrent writers never interleave lines.
            with open(self.destination, "a", encoding="utf-8") as fh:
                fh.write(line)
        metrics.PROMPTS_SAMPLED.inc()

    def _flush_s3(self) -> None:
        if not self._buffer:
            return
        import boto3

        bucket, _, prefix = self.destination[len("s3://") :].partition("/")
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        key = f"{prefix.rstrip('/')}/prompts-{stamp}-{self._run_id}-{self._part:05d}.jsonl"
        lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in self._buffer]
        body = "".join(line + "\n" for line in lines)
        try:
            boto3.client("s3").put_object(Bucket=bucket, Key=key.lstrip("/"), Body=body.encode())
        except Exception:
            log.exception("could not upload %d sampled prompts to %s", len(self._buffer), key)
            return
        self._part += 1
        self._buffer = []
