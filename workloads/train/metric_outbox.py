"""Per-step metrics for a tracking server that may go away for a while.

The trainer logs a line of metrics at every step. ``MetricOutbox`` stamps each value with its
step and wall-clock time when it is logged and sends what is pending in one ``log_batch``. When
the server does not answer (refused, reset, timed out, a 5xx), the values stay in memory and the
step goes on: the next try waits ``backoff_s``, doubling up to ``max_backoff_s``, and happens at
a later step, so a dead server costs a step at most one request of ``request_timeout_s``, not
MLflow's own retries (minutes by default: they are turned off for these requests). Once the
server answers again everything pending goes in order, one warning line marking the outage and
one info line its end.

A value sent twice (the server stored it but the answer was lost) is the same row, key, value,
time and step, and MLflow keeps one of them. ``drain`` waits up to ``final_wait_s`` at the end
of a run; what is still pending then is written to ``mlflow_unsent_metrics.json`` in the run's
directory and the run stops with one line naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from tuneops.core.config import StrictModel
from tuneops.core.errors import UserError
from tuneops.core.io import atomic_write_json

log = logging.getLogger(__name__)

BATCH = 1000  # values per request (MLflow's limit for log_batch)
UNSENT = "mlflow_unsent_metrics.json"


class MetricRetry(StrictModel):
    """``tracking.retry`` of the training config."""

    # Timeout of one request to the tracking server while training (whole seconds).
    request_timeout_s: int = Field(5, ge=1, le=600)
    # Wait before the first new try after a failure; doubles after each further one.
    backoff_s: float = Field(1.0, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    # At the end of the run: how long to wait for the server before giving up.
    final_wait_s: float = Field(300.0, ge=0)


class TrackingUnavailable(UserError):
    """The tracking server did not come back before the end of the run."""


def transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: no answer, a timeout, 5xx, 408 or 429."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(exc, requests.RequestException | OSError):
        return True
    if isinstance(exc, MlflowException):
        status = exc.get_http_status_code()
        return status >= 500 or status in (408, 429)
    return False


@contextlib.contextmanager
def quick_requests(timeout_s: int):
    """MLflow's HTTP client without its own retries and with a short timeout, for the
    duration of the block (MLflow reads both settings from the environment per request)."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s),
    }
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class MetricOutbox:
    """Metrics of one MLflow run, sent when the server answers (see the module docstring)."""

    client: Any  # mlflow.MlflowClient of the run's tracking URI
    run_id: str
    where: str  # the tracking URI, for messages
    retry: MetricRetry = field(default_factory=MetricRetry)
    pending: list[Any] = field(default_factory=list)  # mlflow.entities.Metric, oldest first
    sent: int = 0
    failures: int = 0
    next_try: float = 0.0  # time.monotonic() before which nothing is tried
    down_since: float | None = None
    step: int = 0  # of the latest values added

    def add(self, metrics: dict[str, float], step: int) -> None:
        """Queue one log line's values (stamped now) and send what is due."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.step = step
        self.pending += [Metric(key, value, stamp, step) for key, value in metrics.items()]
        if time.monotonic() >= self.next_try:
            self.send()

    def send(self) -> bool:
        """Send everything pending now; whether nothing is left."""
        try:
            with quick_requests(self.retry.request_timeout_s):
                while self.pending:
                    batch = self.pending[:BATCH]
                    self.client.log_batch(self.run_id, metrics=batch)
                    del self.pending[: len(batch)]
                    self.sent += len(batch)
        except Exception as exc:
            if not transient(exc):
                raise
            self._failed(exc)
            return False
        if self.down_since is not None:
            log.info(
                "MLflow at %s answers again after %.0f s (step %d); sent the metrics kept "
                "meanwhile",
                self.where,
                time.monotonic() - self.down_since,
                self.step,
            )
        self.failures, self.down_since, self.next_try = 0, None, 0.0
        return True

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        wait = min(self.retry.backoff_s * 2**self.failures, self.retry.max_backoff_s)
        self.failures += 1
        self.next_try = now + wait
        if self.down_since is None:
            self.down_since = now
            cause = " ".join(str(exc).split())[:200]
            log.warning(
                "MLflow at %s does not answer (step %d: %s); training goes on, metrics wait in "
                "memory and are sent when it is back",
                self.where,
                self.step,
                cause,
            )

    def drain(self, wait_s: float) -> bool:
        """Send what is pending, trying for up to ``wait_s``; whether nothing is left."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.send():
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            time.sleep(max(0.0, min(self.next_try, deadline) - now))

    def save(self, out_dir: Path) -> Path:
        """Write what is pending to ``out_dir/mlflow_unsent_metrics.json``; its path."""
        path = out_dir / UNSENT
        atomic_write_json(
            path,
            {
                "tracking_uri": self.where,
                "run_id": self.run_id,
                "metrics": [
                    {"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                    for m in self.pending
                ],
            },
        )
        return path

    def give_up(self, run_name: str, out_dir: Path | None, waited_s: float) -> TrackingUnavailable:
        """Save what is pending and return the one-line error that says where it is."""
        kept = f"kept in {self.save(out_dir)}" if out_dir is not None else "lost"
        waited = f" within {waited_s:.0f} s" if waited_s else ""
        return TrackingUnavailable(
            f"MLflow at {self.where} did not answer{waited} at the end of run {run_name} "
            f"(id {self.run_id}): {len(self.pending)} metric values {kept}; the trained outputs "
            "are on disk"
        )
