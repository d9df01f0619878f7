"""The depth of a queue on kombu's SQLAlchemy transport (the embedded broker): a count over kombu's tables.

SQL, so in the ledger; `broker.depth` calls it for `sqla+` broker URLs.
"""

from __future__ import annotations

import math
import os

from sqlalchemy import Engine, create_engine, inspect, text

# kombu's SQLAlchemy transport keeps messages in these tables (its defaults; celery_config sets no others).
KOMBU_QUEUE_TABLE = "kombu_queue"
KOMBU_MESSAGE_TABLE = "kombu_message"

_broker_engines: dict[tuple[int, str], Engine] = {}


# kombu's own table names; the queue name is a bound parameter.
_SQLA_DEPTH = (
    "SELECT COUNT(*) FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
    "WHERE q.name = :queue AND m.visible = :visible"
)


def kombu_queue_depth(url: str, queue: str, timeout: float) -> int:
    """Visible messages in `queue` of the kombu SQLAlchemy broker at `url` (0 before its first use)."""
    engine = _broker_engine(url, timeout)
    query = text(_SQLA_DEPTH).bindparams(queue=queue, visible=True)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(query) or 0)
    except Exception:
        # kombu creates its tables on first use: a broker nothing was ever sent through has none yet.
        if not _has_kombu_tables(engine):
            return 0
        raise


def _has_kombu_tables(engine: Engine) -> bool:
    inspector = inspect(engine)
    return inspector.has_table(KOMBU_QUEUE_TABLE) and inspector.has_table(KOMBU_MESSAGE_TABLE)


def _broker_engine(url: str, timeout: float) -> Engine:
    """An engine of our own on the broker's database (no pragmas changed on kombu's file)."""
    key = (os.getpid(), url)
    engine = _broker_engines.get(key)
    if engine is None:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": timeout})
        elif url.startswith("postgresql"):
            engine = create_engine(
                url, pool_pre_ping=True, connect_args={"connect_timeout": math.ceil(timeout)}
            )
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _broker_engines[key] = engine
    return engine


def dispose_broker_engines() -> None:
    """Close this process's engines on the broker's database (tests, shutdown)."""
    for (pid, _url), engine in list(_broker_engines.items()):
        if pid == os.getpid():
            engine.dispose()
    _broker_engines.clear()
