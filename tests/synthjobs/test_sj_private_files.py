"""Files only the service's own user may read: the SQLite ledger and broker, home, and the access log."""

from __future__ import annotations

import io
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthjobs.broker.queue import make_sender
from synthjobs.ledger.db import dispose_engines
from synthjobs.ledger.migrate import upgrade_database
from synthjobs.logs import configure_logging
from synthjobs.settings import Settings
from synthjobs.sqlite_files import secure_sqlite_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022 umask, under which files come out world-readable unless made otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)
    dispose_engines()


def test_the_embedded_default_ledger_and_broker_are_owner_only(tmp_path: Path, usual_umask: None) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_home()
    upgrade_database(settings.resolved_database_url())
    sender = make_sender(settings)
    with sender.connection_for_write() as connection:
        with connection.SimpleQueue("probe") as queue:
            queue.put({"probe": True})  # kombu creates its tables, and so the file, on first use
    sender.close()
    home = tmp_path / "home"
    assert _mode(home) == 0o700
    files = [p for p in home.iterdir() if p.name.startswith(("synthjobs.db", "broker.db"))]
    assert {p.name for p in files} >= {"synthjobs.db", "broker.db"}
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_world_readable_sqlite_file_is_tightened(tmp_path: Path) -> None:
    ledger = tmp_path / "old.db"
    ledger.write_bytes(b"")
    ledger.chmod(0o644)
    secure_sqlite_file(f"sqlite:///{ledger}")
    assert _mode(ledger) == 0o600


def test_access_log_lines_keep_no_signed_query_strings() -> None:
    stream = io.StringIO()
    handler = configure_logging(json=True, stream=stream)
    try:
        access = logging.getLogger("uvicorn.access")
        line = '%s - "%s %s HTTP/%s" %d'
        path = "/v1/jobs/j1/artifacts/shard-00000.npz?expires=1900000000&signature=" + "ab" * 32
        access.info(line, "127.0.0.1:5000", "GET", path, "1.1", 200)
        s3 = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA&X-Amz-Signature=" + "cd" * 32
        access.info(line, "127.0.0.1:5000", "GET", s3, "1.1", 307)
        access.info(line, "127.0.0.1:5000", "GET", "/v1/jobs?limit=5", "1.1", 200)
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "abab" not in text and "cdcd" not in text and "AKIA" not in text and "expires=19" not in text
    assert "/v1/jobs/j1/artifacts/shard-00000.npz?[REDACTED]" in text
    assert "/v1/jobs?limit=5" in text, "queries without a signature are kept"
