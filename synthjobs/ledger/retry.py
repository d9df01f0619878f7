"""SQL transactions retried when the database connection drops (a PostgreSQL restart, a failover).

The classification is ours (`is_transient`: which SQLAlchemy errors mean "the connection went away", as
opposed to a constraint or a bad query); the retry loop, backoff and jitter are tenacity's, through
`synthjobs.retry.retry_transient`. The whole transaction runs again from the start on a fresh session, so
a retry never continues half of one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from synthjobs.ledger.db import session_scope
from synthjobs.retry import is_transient_io, retry_transient

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same thing again later may succeed (SQL, storage or network)."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return is_transient_io(exc)


def in_transaction(url: str, work: Callable[[Session], T], *, what: str) -> T:
    """Run `work` in its own transaction, again from the start if the database connection fails."""

    def once() -> T:
        with session_scope(url) as session:
            return work(session)

    return retry_transient(once, what=what, is_transient=is_transient)
