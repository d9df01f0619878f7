"""Prometheus metrics of the service, computed from the SQL ledger and the broker at scrape time.

Why at scrape time, and from SQL: every fact worth counting (job states and durations, epochs trained,
samples and bytes written, models registered) is already a row in the ledger, written by whichever worker
did the work. Reading the numbers from there when Prometheus scrapes the API means workers need no metrics
endpoint of their own (no port per worker process, no service discovery of GPU boxes, no multiprocess
counter files), a restarted process loses nothing, and every API replica answers the same numbers.
Because every replica reports the same totals, scrape one replica or aggregate replicas with `max`, not `sum`.

The cost is five aggregate queries per scrape. They return a few rows each but read every row they count
(the histogram reads finished jobs through `ix_jobs_state_created`; job_events and job_shards have no
index on kind or state): about 0.15 s per scrape measured with 50,000 jobs, 500,000 events and 100,000
shards, on SQLite and PostgreSQL alike.

`collect(session, settings)` returns the text exposition format 0.0.4 (served as `CONTENT_TYPE`); this
module knows nothing of HTTP. A database error propagates (the scrape fails, which Prometheus records as
`up == 0`); a broker error only sets `synthjobs_broker_up 0` and drops the queue depth.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import redis
from sqlalchemy import (
    ColumnElement,
    Engine,
    case,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.orm import Session

from synthjobs.jobs import TERMINAL_STATES
from synthjobs.models import Job, JobEvent, JobKind, JobShard, JobState, Model, ShardState
from synthjobs.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Upper bounds (seconds) of the duration histogram's buckets; +Inf is added on output.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 14400)

# kombu's SQLAlchemy transport keeps messages in these tables (its defaults; celery_config sets no others).
KOMBU_QUEUE_TABLE = "kombu_queue"
KOMBU_MESSAGE_TABLE = "kombu_message"

# kombu's Redis transport puts a message of priority p > 0 on "<queue>\x06\x16<step>" (steps 3, 6, 9).
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITY_STEPS = (3, 6, 9)

Labels = dict[str, str]


class UnsupportedBroker(Exception):
    """The broker's transport has no queue-depth reader here (only Redis and kombu's SQLAlchemy)."""


@dataclass
class Family:
    """One metric family: its HELP and TYPE lines and its samples (suffix, labels, value)."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels | None = None, suffix: str = "") -> None:
        self.samples.append((suffix, labels or {}, value))

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for suffix, labels, value in self.samples:
            lines.append(f"{self.name}{suffix}{_render_labels(labels)} {_render_value(value)}")
        return lines


def collect(session: Session, settings: Settings) -> str:
    """Every synthjobs metric, in Prometheus text format 0.0.4.

    Args:
        session: a session on the jobs database; only read from.
        settings: where the broker is and which queue the workers consume.

    Returns:
        The exposition text, ending with a newline.
    """
    families = [
        _jobs_family(session),
        *_broker_families(settings),
        _duration_family(session),
        *_output_families(session),
    ]
    return "\n".join(line for family in families for line in family.render()) + "\n"


def _jobs_family(session: Session) -> Family:
    family = Family("synthjobs_jobs", "gauge", "Jobs in the ledger by kind and state.")
    counts = {(kind.value, state.value): 0 for kind in JobKind for state in JobState}
    rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    for kind, state, count in rows:
        counts[(kind, state)] = count
    for (kind, state), count in sorted(counts.items()):
        family.add(count, {"kind": kind, "state": state})
    return family


def _broker_families(settings: Settings) -> list[Family]:
    up = Family("synthjobs_broker_up", "gauge", "1 when the broker answered the queue-depth query, else 0.")
    depth = Family(
        "synthjobs_queue_depth", "gauge", "Task messages waiting in the broker queue (not yet delivered)."
    )
    try:
        waiting = read_queue_depth(settings)
    except UnsupportedBroker:
        return []
    except Exception as exc:  # noqa: BLE001 - a broken broker is a metric, not a failed scrape
        log.warning("metrics: broker unreachable, queue depth left out: %s: %s", type(exc).__name__, exc)
        up.add(0)
        return [up]
    up.add(1)
    depth.add(waiting, {"queue": settings.queue})
    return [up, depth]


def _duration_family(session: Session) -> Family:
    """Finished jobs' run time, bucketed by the database: one GROUP BY (kind, bucket) query with CASE.

    Bucketing in SQL counts every job that ever finished (no window), so `_count` and the buckets only grow,
    as Prometheus expects of a histogram, and at most 9 rows per kind leave the database. Each run is put in
    its smallest bucket there; the cumulative counts are summed up here.
    """
    family = Family(
        "synthjobs_task_duration_seconds",
        "histogram",
        "Run time (finished_at - started_at) of jobs that ran and finished, by kind.",
    )
    seconds = _seconds_between(session, Job.started_at, Job.finished_at)
    # A run finished "before" it started (clocks of two machines) counts as 0 s: first bucket, adds nothing.
    bucket = case(
        *((seconds <= bound, index) for index, bound in enumerate(DURATION_BUCKETS)),
        else_=len(DURATION_BUCKETS),
    ).label("bucket")
    query = (
        select(Job.kind, bucket, func.count(), func.sum(case((seconds < 0, 0.0), else_=seconds)))
        .where(
            Job.state.in_([state.value for state in TERMINAL_STATES]),
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .group_by(Job.kind, bucket)
    )
    counts = {kind.value: [0] * (len(DURATION_BUCKETS) + 1) for kind in JobKind}
    totals = {kind.value: 0.0 for kind in JobKind}
    for kind, index, count, total in session.execute(query):
        counts.setdefault(kind, [0] * (len(DURATION_BUCKETS) + 1))[index] += count
        totals[kind] = totals.get(kind, 0.0) + float(total or 0.0)
    for kind in sorted(counts):
        cumulative = list(accumulate(counts[kind]))
        for bound, in_bucket in zip(DURATION_BUCKETS, cumulative[:-1], strict=True):
            family.add(in_bucket, {"kind": kind, "le": _render_value(float(bound))}, "_bucket")
        family.add(cumulative[-1], {"kind": kind, "le": "+Inf"}, "_bucket")
        family.add(totals[kind], {"kind": kind}, "_sum")
        family.add(cumulative[-1], {"kind": kind}, "_count")
    return family


def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    """`end - start` in seconds, as SQL for this session's database."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":  # timestamps are ISO text there; julianday() reads them (to ~0.1 ms)
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    if dialect == "postgresql":
        return func.date_part("epoch", end - start)  # double precision (EXTRACT gives slower numeric)
    raise NotImplementedError(f"no duration expression for {dialect}")


def _output_families(session: Session) -> list[Family]:
    samples, shard_bytes = session.execute(
        select(func.coalesce(func.sum(JobShard.count), 0), func.coalesce(func.sum(JobShard.bytes), 0)).where(
            JobShard.state == ShardState.DONE.value
        )
    ).one()
    is_epoch = JobEvent.kind == "epoch"
    # The training pipeline records each final checkpoint's size in the data of an "uploaded" event.
    checkpoint_bytes = case((JobEvent.kind == "uploaded", JobEvent.data["bytes"].as_float()), else_=0.0)
    epochs, uploaded = session.execute(
        select(
            func.coalesce(func.sum(case((is_epoch, 1), else_=0)), 0),
            func.coalesce(func.sum(checkpoint_bytes), 0),
        ).where(JobEvent.kind.in_(["epoch", "uploaded"]))
    ).one()
    models = session.scalar(select(func.count()).select_from(Model)) or 0
    families = [
        ("synthjobs_samples_generated_total", "Samples written by finished (DONE) shards.", int(samples)),
        (
            "synthjobs_bytes_uploaded_total",
            "Bytes stored: finished (DONE) shards plus final model checkpoints (from 'uploaded' events). "
            "Resume checkpoints, previews and model cards are not recorded, so not counted.",
            int(shard_bytes or 0) + int(uploaded or 0),
        ),
        (
            "synthjobs_training_epochs_total",
            "Training epochs completed (job events of kind 'epoch').",
            int(epochs),
        ),
        ("synthjobs_models_total", "Models registered (every version of every name).", int(models)),
    ]
    result = []
    for name, help_text, value in families:
        family = Family(name, "counter", help_text)
        family.add(value)
        result.append(family)
    return result


# --- Broker ---------------------------------------------------------------------------------------------

_redis_clients: dict[tuple[int, str], redis.Redis] = {}
_broker_engines: dict[tuple[int, str], Engine] = {}


def read_queue_depth(settings: Settings) -> int:
    """Messages waiting in `settings.queue`: LLEN on Redis, visible rows on kombu's SQLAlchemy transport.

    Raises:
        UnsupportedBroker: for other transports (the depth is then left out).
        Exception: whatever the broker client raised when the broker is unreachable.
    """
    url = settings.resolved_broker_url().split(";")[0]  # kombu accepts "url1;url2" for failover
    scheme = url.partition("://")[0]
    timeout = settings.enqueue_timeout
    if scheme in ("redis", "rediss"):
        return _redis_depth(url, settings.queue, timeout)
    if scheme.startswith(("sqla+", "sqlalchemy+")):
        return _sqla_depth(url.partition("+")[2], settings.queue, timeout)
    raise UnsupportedBroker(scheme)


def _redis_depth(url: str, queue: str, timeout: float) -> int:
    key = (os.getpid(), url)
    client = _redis_clients.get(key)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        _redis_clients[key] = client
    names = [queue, *(f"{queue}{_REDIS_PRIORITY_SEP}{step}" for step in _REDIS_PRIORITY_STEPS)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
    return sum(int(length) for length in pipe.execute())


# kombu's own table names; the queue name is a bound parameter.
_SQLA_DEPTH = (
    "SELECT COUNT(*) FROM kombu_message m JOIN kombu_queue q ON m.queue_id = q.id "
    "WHERE q.name = :queue AND m.visible = :visible"
)


def _sqla_depth(url: str, queue: str, timeout: float) -> int:
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


def dispose_broker_clients() -> None:
    """Close this process's broker connections made for metrics (tests, shutdown)."""
    for (pid, _url), client in list(_redis_clients.items()):
        if pid == os.getpid():
            client.close()
    for (pid, _url), engine in list(_broker_engines.items()):
        if pid == os.getpid():
            engine.dispose()
    _redis_clients.clear()
    _broker_engines.clear()


# --- Text format ----------------------------------------------------------------------------------------


def _render_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _render_value(value: float) -> str:
    """Integers as integers ("3"), floats as Python's shortest round-trip repr ("1.0", "0.25"), NaN, ±Inf."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
