"""Fixtures for real services: PostgreSQL, Redis, an HTTP S3 endpoint (moto's server), and whole stacks.

They are thin wrappers: the machinery lives in `tests/support/` and `synthjobs.devtools.stack`, which `bench/`
uses too. A test that needs a service skips with the reason when it is absent, unless
SYNTHJOBS_REQUIRE_SERVICES=1 (as in CI): then it fails, so a green CI run means the real stack was exercised.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from synthjobs.devtools.stack import S3_TEST_ENV, Stack
from synthjobs.devtools.stack import start_stack as start_stack_in
from synthjobs.ledger.migrate import upgrade_database
from tests.support import bombs
from tests.support.services import (
    PG_ADMIN_URL,
    REDIS_URL,
    flushed_redis,
    fresh_postgres_database,
    moto_server,
    redis_db,
)

REQUIRE_SERVICES = os.environ.get("SYNTHJOBS_REQUIRE_SERVICES") == "1"
__all__ = ["S3_TEST_ENV", "Stack", "StackFactory"]


def service_unavailable(reason: str) -> None:
    """Skip the test, or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (SYNTHJOBS_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


# --- PostgreSQL -----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Put the root logger back after each test: an app built in one test installs the service's log
    handler, which would otherwise print into a later test's captured stderr (xdist mixes the order)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """A PostgreSQL server we may create databases on."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        service_unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a random name, so xdist workers never share one)."""
    with fresh_postgres_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh, migrated SQLite database file for one test."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    upgrade_database(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


# --- Redis ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """A Redis server; skipped or failed when absent."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        service_unavailable(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis database flushed before and after the test (its own number per xdist worker)."""
    try:
        db = redis_db()
    except RuntimeError as exc:  # a misconfiguration: not a reason to skip
        pytest.fail(str(exc))
    with flushed_redis(redis_server_url, db) as url:
        yield url


# --- S3 (moto's threaded HTTP server) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real HTTP S3 endpoint on 127.0.0.1, reached through boto3 as production reaches MinIO."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        service_unavailable(f"moto's server is not installed: {exc}")
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh bucket for one test."""
    import boto3

    name = f"synthjobs-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_client(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client on the test endpoint, to look at what the service stored."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


# --- Whole stacks: a real uvicorn API and a real Celery worker ------------------------------------------


StackFactory = Callable[..., Stack]

# A test's workers skip the start-up warm-up (worker.warmup): it is ~3 s of CPU per worker, paid in a
# background thread against the test itself on two cores, and most test workers never train. The warm-up has
# its own tests (tests/worker/test_wk_warmup.py); a test can turn it back on through extra_env.
TEST_STACK_ENV = {"SYNTHJOBS_WORKER_WARM_UP": "0"}


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Start an API and workers on the given URLs (defaults: the embedded default under tmp_path/home<N>).

    Keyword arguments are `synthjobs.devtools.stack.stack_env`'s (database_url, broker_url, storage_url,
    s3_endpoint, extra_env as `extra`) plus `workers`; every stack started is stopped at teardown.
    """
    started: list[Stack] = []

    def start(*, workers: int = 1, extra_env: dict[str, str] | None = None, **urls: str | None) -> Stack:
        home = tmp_path / f"home{len(started)}"
        try:
            extra = {**TEST_STACK_ENV, **(extra_env or {})}
            stack = start_stack_in(home, workers=workers, extra=extra, **urls)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.close()


# --- Decompression bombs (issue 10): small files that declare or decode to far more than they weigh -------


@pytest.fixture(scope="session")
def zip_bomb() -> bytes:
    """A consistent .npz of 8192 zero images of 128x128 (128 MiB decoded) that compresses to about 130 kB."""
    n = 8192
    return bombs.npz_bomb({"images": ("|u1", (n, 128, 128), n * 128 * 128), "labels": ("<i8", (n,), n * 8)})


@pytest.fixture(scope="session")
def png_bomb() -> bytes:
    """A 16000x16000 black 1-bit PNG: about 30 kB that decodes to 256 MB of greyscale pixels."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (16000, 16000)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def build_npz() -> Callable[[dict[str, tuple[str, tuple[int, ...], int]]], bytes]:
    """`npz_bomb`, for tests that build their own archive."""
    return bombs.npz_bomb
