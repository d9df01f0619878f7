"""The ledger's aggregates behind the Prometheus metrics (`maintenance.metrics` renders them).

Five aggregate queries per scrape; they return a few rows each but read every row they count (the histogram
reads finished jobs through `ix_jobs_state_created`; job_events and job_shards have no index on kind or
state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from synthjobs.ledger.jobs import TERMINAL_STATES
from synthjobs.ledger.tables import Job, JobEvent, JobShard, JobState, Model, ShardState
from synthjobs.rules.kinds import kind_names


@dataclass(frozen=True)
class OutputTotals:
    """What the service has produced, summed over the whole ledger."""

    samples: int  # written by DONE shards
    shard_bytes: int  # bytes of DONE shards
    epochs: int  # "epoch" job events
    checkpoint_bytes: int  # final checkpoints' sizes, from "uploaded" job events
    models: int  # every version of every name


def job_counts(session: Session) -> dict[tuple[str, str], int]:
    """Jobs by (kind, state), with a 0 for every kind and state that has none."""
    counts = {(kind, state.value): 0 for kind in kind_names() for state in JobState}
    rows = session.execute(select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state))
    for kind, state, count in rows:
        counts[(kind, state)] = count
    return counts


def duration_buckets(
    session: Session, bounds: Sequence[float]
) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Finished jobs' run times by kind: how many fall in each bucket (the last is +Inf) and their sum.

    One GROUP BY (kind, bucket) query with CASE, so at most len(bounds) + 1 rows per kind leave the database.
    """
    seconds = seconds_between(session, Job.started_at, Job.finished_at)
    # A run finished "before" it started (clocks of two machines) counts as 0 s: first bucket, adds nothing.
    bucket = case(
        *((seconds <= bound, index) for index, bound in enumerate(bounds)),
        else_=len(bounds),
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
    counts = {kind: [0] * (len(bounds) + 1) for kind in kind_names()}
    totals = {kind: 0.0 for kind in kind_names()}
    for kind, index, count, total in session.execute(query):
        counts.setdefault(kind, [0] * (len(bounds) + 1))[index] += count
        totals[kind] = totals.get(kind, 0.0) + float(total or 0.0)
    return counts, totals


def wait_buckets(session: Session, bounds: Sequence[float]) -> dict[tuple[str, str], tuple[list[int], float]]:
    """Queue waits by (tenant, stage): per-bucket counts (the last is +Inf) and their sum, bucketed in SQL.

    Stage `job` is submit -> first claim (`jobs.created_at` -> `started_at`), over every job that started;
    stage `shard` is release -> first claim of a sampling shard (`released_at` -> `claimed_at`).
    """
    job_wait = seconds_between(session, Job.created_at, Job.started_at)
    shard_wait = seconds_between(session, JobShard.released_at, JobShard.claimed_at)
    out: dict[tuple[str, str], tuple[list[int], float]] = {}
    for stage, seconds, query in (
        ("job", job_wait, select(Job.tenant).where(Job.started_at.is_not(None))),
        (
            "shard",
            shard_wait,
            select(Job.tenant)
            .join(JobShard, JobShard.job_id == Job.id)
            .where(JobShard.released_at.is_not(None), JobShard.claimed_at.is_not(None)),
        ),
    ):
        bucket = case(*((seconds <= b, i) for i, b in enumerate(bounds)), else_=len(bounds)).label("bucket")
        rows = session.execute(
            query.add_columns(
                bucket, func.count(), func.sum(case((seconds < 0, 0.0), else_=seconds))
            ).group_by(Job.tenant, bucket)
        )
        for tenant, index, count, total in rows:
            counts, sum_ = out.get((tenant, stage), ([0] * (len(bounds) + 1), 0.0))
            counts[index] += count
            out[(tenant, stage)] = (counts, sum_ + float(total or 0.0))
    return out


def seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    """`end - start` in seconds, as SQL for this session's database."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":  # timestamps are ISO text there; julianday() reads them (to ~0.1 ms)
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    if dialect == "postgresql":
        return func.date_part("epoch", end - start)  # double precision (EXTRACT gives slower numeric)
    raise NotImplementedError(f"no duration expression for {dialect}")


def output_totals(session: Session) -> OutputTotals:
    """Samples and bytes written, epochs trained and models registered, over the whole ledger."""
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
    return OutputTotals(
        samples=int(samples),
        shard_bytes=int(shard_bytes or 0),
        epochs=int(epochs),
        checkpoint_bytes=int(uploaded or 0),
        models=int(models),
    )
