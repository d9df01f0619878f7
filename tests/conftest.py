"""Fixtures for real services: PostgreSQL, Redis, an HTTP S3 endpoint (moto's server), and whole stacks.

A test that needs a service skips with the reason when it is absent, unless SYNTHJOBS_REQUIRE_SERVICES=1
(as in CI): then it fails, so a green CI run means the real stack was exercised.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synthjobs.devtools import processes
from synthjobs.ledger.migrate import upgrade_database
from synthjobs.storage.base import local_path_of
from synthjobs_client.client import Client

REQUIRE_SERVICES = os.environ.get("SYNTHJOBS_REQUIRE_SERVICES") == "1"
PG_HOST, PG_PORT = os.environ.get("SYNTHJOBS_TEST_PG_HOST", "127.0.0.1"), 5432
PG_ADMIN_URL = os.environ.get(
    "SYNTHJOBS_TEST_PG_URL", f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/test"
)
REDIS_URL = os.environ.get("SYNTHJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Tests flush their Redis database; runs side by side on one server each take their own number.
REDIS_DB = int(os.environ.get("SYNTHJOBS_TEST_REDIS_DB", "9"))
S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def service_unavailable(reason: str) -> None:
    """Skip the test, or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (SYNTHJOBS_REQUIRE_SERVICES=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# --- PostgreSQL -----------------------------------------------------------------------------------------


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
    """A fresh, migrated database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"synthjobs_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade_database(url)
    yield url
    from synthjobs.ledger.db import dispose_engines

    dispose_engines()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


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
    """A Redis database flushed before and after the test (db 9 unless told, apart from anyone's db 0)."""
    import redis

    url = f"{redis_server_url}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


# --- S3 (moto's threaded HTTP server) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real HTTP S3 endpoint on 127.0.0.1, reached through boto3 as production reaches MinIO."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_unavailable(f"moto's server is not installed: {exc}")
    os.environ.update(S3_TEST_ENV)
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


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


@dataclass
class Stack:
    """A running API and worker sharing one database, broker and storage."""

    env: dict[str, str]
    api_url: str
    client: Client
    logs: Path
    api: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = processes.start_worker(self.env, self.logs / f"worker{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def stored_path(self, key: str) -> Path:
        """The file of a local-storage object the API names by its key (tests look at the bytes)."""
        url = self.env.get("SYNTHJOBS_STORAGE_URL")
        root = local_path_of(url) if url else (Path(self.env["SYNTHJOBS_HOME"]) / "storage").resolve()
        return root / key

    def log_tail(self, lines: int = 60) -> str:
        """The end of every process log, for assertion messages."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)


StackFactory = Callable[..., Stack]


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Start an API and a worker on the given URLs (defaults: the embedded default under tmp_path)."""
    started: list[Stack] = []

    def start(
        *,
        database_url: str | None = None,
        broker_url: str | None = None,
        storage_url: str | None = None,
        s3_endpoint: str | None = None,
        workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> Stack:
        home = tmp_path / f"home{len(started)}"
        logs = home / "logs"
        logs.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHJOBS_")}
        env.update(S3_TEST_ENV)
        env.update({"SYNTHJOBS_HOME": str(home), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
        env["SYNTHJOBS_QUEUE"] = f"gpu-{uuid.uuid4().hex[:8]}"
        env["SYNTHJOBS_ADMIN_TOKEN"] = f"admin-{uuid.uuid4().hex}"
        for key, value in {
            "SYNTHJOBS_DATABASE_URL": database_url,
            "SYNTHJOBS_BROKER_URL": broker_url,
            "SYNTHJOBS_STORAGE_URL": storage_url,
            "SYNTHJOBS_S3_ENDPOINT_URL": s3_endpoint,
        }.items():
            if value:
                env[key] = value
        env.update(extra_env or {})
        port = processes.free_port()
        api_url = f"http://127.0.0.1:{port}"
        api = processes.start_api(env, port, logs / "api.log")
        client = Client(api_url, token=env["SYNTHJOBS_ADMIN_TOKEN"])
        stack = Stack(env=env, api_url=api_url, client=client, logs=logs, api=api)
        started.append(stack)
        try:
            processes.wait_for_api(api_url, api, timeout=60)
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{stack.log_tail()}")
        for _ in range(workers):
            stack.start_worker()
        return stack

    yield start
    for stack in started:
        for worker in stack.workers:
            processes.stop(worker)
        processes.stop(stack.api)
        stack.client.close()


# --- Decompression bombs (issue 10): small files that declare or decode to far more than they weigh -------


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A version 1.0 .npy header for an array of `descr` and `shape`, padded as numpy pads it (64 bytes)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")


def npz_bomb(members: dict[str, tuple[str, tuple[int, ...], int]]) -> bytes:
    """An .npz of deflated members `name: (descr, shape, data bytes)`, the data zeros written 1 MB at a time.

    The data size need not match the header's shape x itemsize, so a test can build an honest bomb (huge
    and consistent, tiny once compressed) or a lying one (a huge header over a few bytes of data).
    """
    import io
    import zipfile

    buffer = io.BytesIO()
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, (descr, shape, size) in members.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                member.write(npy_header(descr, shape))
                for start in range(0, size, len(chunk)):
                    member.write(chunk[: min(len(chunk), size - start)])
    return buffer.getvalue()


@pytest.fixture(scope="session")
def zip_bomb() -> bytes:
    """A consistent .npz of 8192 zero images of 128x128 (128 MiB decoded) that compresses to about 130 kB."""
    n = 8192
    return npz_bomb({"images": ("|u1", (n, 128, 128), n * 128 * 128), "labels": ("<i8", (n,), n * 8)})


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
    return npz_bomb
