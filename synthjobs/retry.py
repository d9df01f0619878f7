"""Retrying what is transient (a dropped connection, a 503, throttling) and nothing else, on tenacity.

Permanent errors (access denied, no such bucket, a constraint violation) surface at once: retrying them
would only delay a clear failure. Backoff is exponential with full jitter (tenacity's
`wait_random_exponential`), so many workers hitting the same outage do not retry in lock-step. The retry
loop is tenacity's; what counts as transient is ours and the caller's: storage and network errors by default
(`is_transient_io`), SQL's dropped connections as well in `synthjobs.ledger.retry`.

S3 is not retried here: botocore's standard retry mode owns S3's retries (`synthjobs.storage.s3`), so
`synthjobs.storage.retry` wraps only storage that does not retry itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from synthjobs.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient_io(exc: BaseException) -> bool:
    """Whether trying the same storage or network call again later may succeed."""
    if isinstance(exc, StorageError):
        return exc.transient
    return isinstance(exc, ConnectionError | TimeoutError)


def retry_transient(
    action: Callable[[], T],
    *,
    what: str,
    attempts: int = 8,
    base: float = 0.25,
    cap: float = 8.0,
    deadline: float | None = None,
    is_transient: Callable[[BaseException], bool] = is_transient_io,
) -> T:
    """Run `action`, retrying transient failures with exponential backoff and full jitter.

    At most `attempts` calls; the n-th retry waits a random time up to `min(cap, base * 2**n)`. With
    `deadline`, no retry starts once the elapsed time plus the next backoff would pass that many seconds,
    so a lasting outage fails in bounded time. `is_transient` classifies a failure (the ledger passes one
    that knows SQL's errors). The last failure is raised as itself, not wrapped in tenacity's RetryError.
    """
    stop: stop_base = stop_after_attempt(attempts)
    if deadline is not None:
        stop = stop | stop_before_delay(deadline)
    retrying = Retrying(
        stop=stop,
        wait=wait_random_exponential(multiplier=2 * base, max=cap),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(what, attempts),
        reraise=True,
        sleep=lambda seconds: time.sleep(seconds),  # looked up per call: tests replace time.sleep
    )
    return retrying(action)


def _log_retry(what: str, attempts: int) -> Callable[[RetryCallState], None]:
    def log_it(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (%s: %s); retry %d/%d in %.2fs",
            what,
            type(exc).__name__,
            exc,
            state.attempt_number,
            attempts - 1,
            state.upcoming_sleep,
        )

    return log_it
