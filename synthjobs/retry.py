"""Retrying what is transient (a dropped connection, a 503, throttling) and nothing else.

Permanent errors (access denied, no such bucket, a constraint violation) surface at once: retrying them
would only delay a clear failure. Backoff is exponential with full jitter, so many workers hitting the same
outage do not retry in lock-step. What counts as transient is the caller's: storage and network errors by
default (`is_transient_io`), SQL's dropped connections as well in `synthjobs.ledger.retry`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

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

    At most `attempts` calls; with `deadline`, no retry starts once the elapsed time plus the next
    backoff would pass that many seconds, so a lasting outage fails in bounded time. `is_transient`
    classifies a failure (the ledger passes one that knows SQL's errors).
    """
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            delay = random.uniform(0, min(cap, base * 2**attempt))
            if deadline is not None and time.monotonic() - started + delay > deadline:
                raise
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.2fs",
                what,
                type(exc).__name__,
                exc,
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
