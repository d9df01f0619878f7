"""The submit path's storage quota: usage read from SQL at most once a second far from the quota, always
near it, and a refusal only ever on figures just read (`api.quota.QuotaGuard.check_storage`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import HTTPException
from sqlalchemy import delete, event

from api.quota import QuotaGuard
from synthjobs.ledger.db import get_engine, session_scope
from synthjobs.ledger.tables import Dataset
from synthjobs.settings import Settings

LIMIT = 1000


def _store(url: str, size: int, name: str = "other process") -> None:
    """Bytes the tenant stores, written as another API process or a worker would: straight to SQL."""
    with session_scope(url) as session:
        session.add(
            Dataset(tenant="acme", name=name, uri="file:///d", bytes=size, sha256="0" * 64, num_images=1)
        )


def _reads(url: str) -> list[str]:
    """The statements run on `url`'s engine from now on (a real SQLite; nothing is mocked)."""
    seen: list[str] = []
    event.listen(get_engine(url), "before_cursor_execute", lambda *a: seen.append(str(a[2])))
    return seen


@pytest.fixture
def guard(tmp_path: Path) -> QuotaGuard:
    return QuotaGuard(Settings(home=tmp_path / "home", max_storage_bytes_per_tenant=LIMIT))


def test_far_from_its_quota_a_tenant_s_usage_is_read_once_a_second_not_per_submit(
    sqlite_url: str, guard: QuotaGuard
) -> None:
    statements = _reads(sqlite_url)
    with session_scope(sqlite_url) as session:
        for _ in range(5):
            guard.check_storage(session, "acme", 10)
            guard.record("acme", 10)
    assert sum("dataset" in s.lower() for s in statements) == 1, "one usage read for five submits"


def test_near_its_quota_every_submit_reads_sql_and_is_held_to_it_exactly(
    sqlite_url: str, guard: QuotaGuard
) -> None:
    with session_scope(sqlite_url) as session:
        guard.check_storage(session, "acme", 10)  # reads 0 bytes
        _store(sqlite_url, 880, "this process's job")
        guard.record("acme", 880)  # as a submit records its own reservation: 880 of 1000 known here
        _store(sqlite_url, 100)  # another process's write, not seen here: 980 stored in fact
        with pytest.raises(HTTPException) as refused:
            guard.check_storage(session, "acme", 30)  # 880 + 30 is past 90 %: read, and 980 + 30 > 1000
    assert refused.value.status_code == 429
    assert "stores 980 bytes" in str(refused.value.detail), "the figure in the refusal is the one just read"


def test_a_refusal_is_never_made_on_a_stale_figure(sqlite_url: str, guard: QuotaGuard) -> None:
    _store(sqlite_url, 990)
    with session_scope(sqlite_url) as session:
        with pytest.raises(HTTPException):
            guard.check_storage(session, "acme", 20)
        session.execute(delete(Dataset))  # room made (a deletion, in any process)
        session.commit()
        guard.check_storage(session, "acme", 20)  # within the second: read again, and admitted
