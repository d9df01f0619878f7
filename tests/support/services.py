"""PostgreSQL, Redis and an HTTP S3 endpoint for tests and benchmarks: where they are, and a clean one each.

Under pytest-xdist every worker process gets its own Redis database number (the base plus the worker's
index), so flushing it never disturbs another worker; PostgreSQL databases and S3 buckets get random names,
and moto's server is one per process.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from synthjobs.devtools import processes
from synthjobs.devtools.stack import S3_TEST_ENV

PG_HOST = os.environ.get("SYNTHJOBS_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_URL = os.environ.get("SYNTHJOBS_TEST_PG_URL", f"postgresql+psycopg://postgres@{PG_HOST}:5432/test")
REDIS_URL = os.environ.get("SYNTHJOBS_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DATABASES = 16  # redis-server's default `databases`


def xdist_worker_index() -> int:
    """0 outside pytest-xdist, else N of this worker's id `gwN`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


def redis_db() -> int:
    """This process's Redis database: SYNTHJOBS_TEST_REDIS_DB (9 unless told) plus the xdist worker index.

    Tests flush their database, so runs side by side on one server each take their own number.
    """
    db = int(os.environ.get("SYNTHJOBS_TEST_REDIS_DB", "9")) + xdist_worker_index()
    if db >= REDIS_DATABASES:
        raise RuntimeError(
            f"Redis database {db} does not exist (0-{REDIS_DATABASES - 1}): lower SYNTHJOBS_TEST_REDIS_DB "
            "or run fewer xdist workers"
        )
    return db


@contextmanager
def fresh_postgres_database(
    admin_url: str, prefix: str = "synthjobs_test", *, migrate: bool = True
) -> Iterator[str]:
    """A new PostgreSQL database, migrated unless told; dropped afterwards, its connections forced closed."""
    from sqlalchemy import create_engine, text

    from synthjobs.ledger.db import dispose_engines
    from synthjobs.ledger.migrate import upgrade_database

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrate:
            upgrade_database(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def flushed_redis(server_url: str, db: int) -> Iterator[str]:
    """Redis database `db` flushed before and after; yields its URL."""
    import redis

    url = f"{server_url.rstrip('/')}/{db}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@contextmanager
def moto_server(bucket: str | None = None) -> Iterator[str]:
    """moto's threaded S3 server on 127.0.0.1 (threads of this process); yields its URL.

    It sets the dummy AWS credentials in this process's environment, as boto3 needs some to sign with.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    os.environ.update(S3_TEST_ENV)
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        if bucket:
            boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()
