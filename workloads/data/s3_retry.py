"""S3 calls that survive a flaky endpoint: the dataset upload and the training checkpoints.

Every request has a connect and read timeout (``timeout_s``) and botocore's own retries are off,
so one place decides: a call that fails in a way that can pass (the endpoint refuses or drops
the connection, a request times out, S3 answers 5xx, 429 or a throttling code) is tried again
with tenacity, ``attempts`` tries in all, waiting ``backoff_s`` after the first failure and
doubling up to ``max_backoff_s``. After the last try the caller gets ``S3Unavailable``: one line
naming what was being copied, where, how many tries over how long, and the last cause. Errors
that retrying cannot fix (no such bucket, access denied, no credentials) are not retried.

Uploads are retried file by file, so the files already copied are not sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import Field

from tuneops.core.config import StrictModel
from tuneops.core.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")

# S3 error codes that mean "try again later" rather than "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
    }
)


class S3Retry(StrictModel):
    """How hard an S3 copy tries before it gives up (``upload_retry`` in the configs)."""

    # Tries per call, the first included.
    attempts: int = Field(5, ge=1, le=20)
    # Wait after the first failed try; doubles after each further one, up to max_backoff_s.
    backoff_s: float = Field(1.0, gt=0)
    max_backoff_s: float = Field(20.0, gt=0)
    # Connect and read timeout of one request: a stalled endpoint fails the try after this.
    timeout_s: float = Field(30.0, gt=0)


class S3Unavailable(UserError):
    """S3 refused, dropped or timed out on every try of a call."""


def s3_client(policy: S3Retry):
    """A boto3 S3 client with the policy's timeouts and botocore's retries off (tenacity
    retries instead, see ``call``)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=policy.timeout_s,
        read_timeout=policy.timeout_s,
        retries={"total_max_attempts": 1},
    )
    return boto3.client("s3", config=config)


def _cause(exc: BaseException) -> BaseException:
    """The botocore error behind boto3's ``S3UploadFailedError`` (which wraps a ClientError)."""
    from boto3.exceptions import S3UploadFailedError

    if isinstance(exc, S3UploadFailedError) and exc.__context__ is not None:
        return exc.__context__
    return exc


def transient(exc: BaseException) -> bool:
    """Whether trying again may succeed: a refused, dropped or timed-out connection, a 5xx or
    429, or a throttling code."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

    exc = _cause(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status == 429 or error.get("Code") in TRANSIENT_CODES
    return isinstance(exc, ConnectionError | HTTPClientError)


def describe(exc: BaseException | None) -> str:
    """The cause of a failure in a few words, on one line."""
    if exc is None:
        return "no answer"
    exc = _cause(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def call(fn: Callable[[], T], policy: S3Retry, *, what: str) -> T:
    """``fn()``, tried again per ``policy`` while it fails transiently; ``S3Unavailable``
    (naming ``what``) after the last try. Other errors are raised as they are."""
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception,
        stop_after_attempt,
        wait_exponential,
    )

    def note(state) -> None:
        log.warning(
            "%s: try %d of %d failed (%s); trying again in %.1f s",
            what,
            state.attempt_number,
            policy.attempts,
            describe(state.outcome.exception()),
            state.next_action.sleep,
        )

    started = time.monotonic()
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.backoff_s, max=policy.max_backoff_s),
        retry=retry_if_exception(transient),
        before_sleep=note,
    )
    try:
        return retrying(fn)
    except RetryError as exc:
        seconds = time.monotonic() - started
        cause = describe(exc.last_attempt.exception())
        raise S3Unavailable(
            f"{what}: S3 did not take it after {policy.attempts} tries in {seconds:.0f} s ({cause})"
        ) from None


def upload_files(
    client, files: list[tuple[Path, str]], bucket: str, policy: S3Retry, *, what: str
) -> None:
    """Upload each ``(path, key)`` in order, every file with its own retries."""
    for path, key in files:
        call(
            lambda path=path, key=key: client.upload_file(str(path), bucket, key),
            policy,
            what=f"{what} (s3://{bucket}/{key})",
        )
