"""Transient failures are retried with backoff; permanent ones surface at once."""

from __future__ import annotations

import io
from typing import BinaryIO

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from synthjobs import retry
from synthjobs.errors import StorageError
from synthjobs.ledger.retry import is_transient
from synthjobs.retry import retry_transient
from synthjobs.storage.retry import RetryingStorage


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    return slept


def flaky(failures: list[Exception], result: str = "ok"):  # type: ignore[no-untyped-def]
    def action() -> str:
        if failures:
            raise failures.pop(0)
        return result

    return action


def test_dropped_database_connections_and_storage_blips_are_transient() -> None:
    assert is_transient(OperationalError("UPDATE jobs", {}, Exception("server closed the connection")))
    assert is_transient(StorageError("503 Slow Down", transient=True))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(StorageError("AccessDenied", transient=False))
    assert not is_transient(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient(ValueError("bad data"))


def test_transient_failures_are_retried_with_growing_jittered_backoff(no_sleep: list[float]) -> None:
    failures: list[Exception] = [ConnectionResetError(), ConnectionResetError(), ConnectionResetError()]
    assert retry_transient(flaky(failures), what="test", base=1.0, cap=100) == "ok"
    assert len(no_sleep) == 3
    assert all(0 <= delay <= 2 ** (i + 1) for i, delay in enumerate(no_sleep))


def test_permanent_failure_is_raised_at_once(no_sleep: list[float]) -> None:
    with pytest.raises(StorageError):
        retry_transient(flaky([StorageError("AccessDenied")]), what="test")
    assert no_sleep == []


def test_retries_stop_after_the_last_attempt(no_sleep: list[float]) -> None:
    failures: list[Exception] = [TimeoutError() for _ in range(5)]
    with pytest.raises(TimeoutError):
        retry_transient(flaky(failures), what="test", attempts=3)
    assert len(no_sleep) == 2


class HalfReadingStorage:
    """Reads part of the stream, then fails once, like an upload cut off mid-way."""

    url = "memory://"

    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}
        self.failed = False

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = "") -> str:
        if not self.failed:
            self.failed = True
            stream.read(3)
            raise StorageError("connection reset", transient=True)
        self.stored[key] = stream.read()
        return key


def test_retried_stream_upload_starts_again_from_the_beginning() -> None:
    inner = HalfReadingStorage()
    RetryingStorage(inner).put_stream("jobs/x/shard-00000.npz", io.BytesIO(b"abcdefgh"))  # type: ignore[arg-type]
    assert inner.stored["jobs/x/shard-00000.npz"] == b"abcdefgh"


def test_retries_stop_before_the_deadline_would_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(retry.time, "sleep", sleep)
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    failures: list[Exception] = [TimeoutError() for _ in range(100)]
    with pytest.raises(TimeoutError):
        retry_transient(flaky(failures), what="test", attempts=100, base=1.0, cap=8.0, deadline=20.0)
    assert sum(slept) <= 20.0 and len(failures) > 80
