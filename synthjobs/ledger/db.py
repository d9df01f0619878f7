"""Engines and sessions: one engine per process and URL, made after any fork.

SQLite runs in WAL mode with a busy timeout, so the API can read while a worker writes progress. Its files
hold every tenant's jobs and the token hashes, so they are created owner-only (0600, folder 0700); SQLite
gives its -wal and -shm files the database file's mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import CursorResult, Engine, Executable, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from synthjobs.sqlite_files import secure_sqlite_file

_engines: dict[tuple[int, str], Engine] = {}


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def get_engine(url: str) -> Engine:
    """The engine for `url` in this process; a forked child gets its own instead of sharing sockets."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        if url.startswith("sqlite"):
            secure_sqlite_file(url)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _configure_sqlite)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        _engines[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    for (pid, _url), engine in list(_engines.items()):
        if pid == os.getpid():
            engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def execute_dml(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE and return how many rows it changed (the guard of every state change)."""
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return int(result.rowcount)
