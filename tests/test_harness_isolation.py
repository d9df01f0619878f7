"""The shared harness keeps pytest-xdist workers apart: each flushes only its own Redis database."""

from __future__ import annotations

import pytest

from tests.support.services import redis_db


@pytest.mark.parametrize(("worker", "db"), [(None, 9), ("gw0", 9), ("gw1", 10), ("gw5", 14)])
def test_each_xdist_worker_gets_the_base_redis_db_plus_its_index(
    monkeypatch: pytest.MonkeyPatch, worker: str | None, db: int
) -> None:
    monkeypatch.setenv("SYNTHJOBS_TEST_REDIS_DB", "9")
    if worker is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    assert redis_db() == db


def test_a_worker_past_the_last_redis_db_is_refused_not_wrapped_onto_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNTHJOBS_TEST_REDIS_DB", "15")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    with pytest.raises(RuntimeError, match="Redis database 16 does not exist"):
        redis_db()
