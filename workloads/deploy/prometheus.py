"""A small client of the Prometheus HTTP API: instant queries that yield one number.

``GET <url>/api/v1/query?query=...`` with httpx; a connection that fails, times out or gets a
5xx (or 429) is tried again with tenacity (``attempts`` in all, backing off), and then ends in
one ``PrometheusUnavailable`` line. A query Prometheus refuses (400, 422) is a config error and
is not retried.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from tuneops.core.errors import MissingToolError, UserError

QUERY_PATH = "/api/v1/query"


class PrometheusUnavailable(MissingToolError):
    """Prometheus could not be asked: unreachable, failing, or not a Prometheus API."""


class _Retryable(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


@dataclass
class PrometheusClient:
    url: str
    timeout_s: float = 10.0
    attempts: int = 3
    token: str | None = None
    # Seconds of the first back-off between tries (doubling, at most 5 s).
    backoff_s: float = 0.5

    @classmethod
    def from_env(cls, url: str, *, timeout_s: float, attempts: int, token_env: str | None):
        token = None
        if token_env:
            token = os.environ.get(token_env, "").strip()
            if not token:
                raise MissingToolError(
                    f"analysis.bearer_token_env names {token_env}, which is not set: export the "
                    "Prometheus token there"
                )
        return cls(url.rstrip("/"), timeout_s=timeout_s, attempts=attempts, token=token)

    def value(self, query: str) -> float | None:
        """The one number ``query`` yields now; None when it yields no series or NaN."""
        data = self._data(query)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _number(result)
        if kind != "vector" or not isinstance(result, list):
            raise UserError(f"the query {query!r} gives a {kind}; it must give one number")
        if not result:
            return None
        if len(result) > 1:
            raise UserError(
                f"the query {query!r} gives {len(result)} series; aggregate it to one "
                "(sum, max or histogram_quantile over sum by (le))"
            )
        return _number(result[0].get("value"))

    def _data(self, query: str) -> dict[str, Any]:
        response = self._get(query)
        try:
            body = response.json()
        except ValueError:
            raise PrometheusUnavailable(
                f"{self.url} answered {response.status_code} without JSON: is it Prometheus?"
            ) from None
        if response.status_code in (400, 422) or body.get("status") == "error":
            reason = body.get("error") or f"HTTP {response.status_code}"
            raise UserError(f"Prometheus refused the query {query!r}: {reason}")
        if response.status_code in (401, 403):
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} refused the request ({response.status_code}): set "
                "analysis.bearer_token_env to a variable holding a token it accepts"
            )
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered {response.status_code} without data"
            )
        return body["data"]

    def _get(self, query: str):
        import httpx
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=5),
            retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
        )
        try:
            for attempt in retrying:
                with attempt:
                    response = httpx.get(
                        self.url + QUERY_PATH,
                        params={"query": query},
                        headers=headers,
                        timeout=self.timeout_s,
                    )
                    if response.status_code >= 500 or response.status_code == 429:
                        raise _Retryable(response.status_code)
                    return response
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} is unreachable after {self.attempts} tries "
                f"({_describe(cause)}); nothing was changed"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    if isinstance(exc, _Retryable):
        return f"it answered HTTP {exc.status}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _number(sample: Any) -> float | None:
    """A sample ``[timestamp, "value"]`` as a float; NaN (0/0, no data) is None."""
    try:
        value = float(sample[1])
    except (TypeError, ValueError, IndexError):
        raise PrometheusUnavailable(
            f"Prometheus answered a sample it could not read: {sample!r}"
        ) from None
    return None if math.isnan(value) else value
