"""Fair sharing, measured: `python bench/scheduling.py` prints tables 1-3 of issue 12.

Every run is a fresh stack on the embedded default (SQLite ledger, kombu's SQLite broker, local storage),
workers on the solo pool, one thread each. "windowed" is the default `SYNTHJOBS_SHARD_WINDOW`; "all at
once" sets the window above the job's shard count, which releases every shard at submit as the service
did before the window existed. Timestamps come from the ledger (jobs.created_at/started_at/finished_at,
job_shards.updated_at of DONE shards), not from this process.

1. Head-of-line: tenant A submits a sampling job of `--shards` shards; 2 s later tenant B submits a
   1-epoch training job. B's wait (started - created) over A's run, and in A's mean shard durations.
   Windowed, A's run includes B's job (it ran in the middle of A's), so compare wait / shard.
2. Two tenants submit a `--shards`-shard job each at the same moment: each tenant's share of the shards
   done at quarters of the time both had backlog, and Jain's fairness index of the shards done by then.
3. One big job alone: samples per second (first claim to manifest) windowed vs all at once, `--rounds`
   rounds interleaved (ABAB; one round alone moved the ratio from 0.74 to 2.17 on a shared 2-vCPU machine),
   and the claim gap: mean time from a shard's DONE to the next shard's claim, which is where windowing
   would cost (the release and its publish happen there), per worker.

4. Cluster-scale simulation (`bench/cluster_sim.py`, always PostgreSQL + Redis): `--tables 4`.

Prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import common

from synthjobs.ledger.db import dispose_engines, session_scope
from synthjobs.ledger.tables import Job, JobShard, ShardState
from synthjobs.ledger.tokens import create_token
from synthjobs_client.client import Client

ALL_AT_ONCE = 10_000  # the setting's upper bound: every shard of these jobs is released at submit


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=100, help="shards of the big jobs")
    p.add_argument("--shard-size", type=int, default=50_000, help="samples per shard")
    p.add_argument("--window", type=int, default=4, help="SYNTHJOBS_SHARD_WINDOW of the windowed runs")
    p.add_argument("--quick", action="store_true", help="a quarter of the shards")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="table 3: rounds of (all at once, windowed), interleaved; one round moved the ratio 0.74-2.17",
    )
    p.add_argument("--tables", default="1,2,3", help="which tables to print (comma-separated)")
    p.add_argument(
        "--services",
        action="store_true",
        help="PostgreSQL (a fresh database per stack) and Redis (SYNTHJOBS_TEST_REDIS_DB) instead of the "
        "embedded default",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.shards = max(8, args.shards // 4)
    return args


SERVICES = False  # set from --services in main()


@contextmanager
def ledger_and_broker(home: Path) -> Any:
    """(database URL or None, broker URL or None) of one stack: the embedded default unless --services."""
    if not SERVICES:
        yield None, None
        return
    from tests.support import services

    with services.fresh_postgres_database(services.PG_ADMIN_URL, "bench_sched") as database_url:
        yield database_url, f"{services.REDIS_URL}/{services.redis_db()}"


@contextmanager
def stack_with(workers: int, window: int) -> Any:
    """A fresh embedded stack with `workers` workers, a second tenant's client and a model of each tenant's
    (models belong to their tenant)."""
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        home = Path(tmp)
        extra = {"SYNTHJOBS_SHARD_WINDOW": str(window), "SYNTHJOBS_PROGRESS_INTERVAL": "0.2"}
        with (
            ledger_and_broker(home) as (database_url, broker_url),
            common.running_stack(
                home, workers=workers, extra=extra, database_url=database_url, broker_url=broker_url
            ) as stack,
        ):
            url = database_url or f"sqlite:///{home.resolve() / 'synthjobs.db'}"
            with session_scope(url) as session:
                token = create_token(session, "tenant-b")
            other = Client(stack.api_url, token=token, timeout=120)
            try:
                own = common.wait_job(stack, stack.client.submit_train(train_body(2))["id"])
                theirs = other.wait(other.submit_train(train_body(2))["id"], timeout=600, poll=0.2)
                models = (own["result"]["model_id"], theirs["result"]["model_id"])
                yield stack, other, url, models
            finally:
                other.close()
                dispose_engines()


def train_body(epochs: int) -> dict[str, Any]:
    return {"dataset": "digits", "hyperparameters": {"epochs": epochs}, "seed": 0}


def sample_body(model: str, shards: int, shard_size: int, seed: int = 0) -> dict[str, Any]:
    total = shards * shard_size
    return {"model": model, "total": total, "shard_size": shard_size, "seed": seed, "quality_samples": 200}


def job_row(url: str, job_id: str) -> tuple[datetime, datetime, datetime]:
    with session_scope(url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.started_at is not None and job.finished_at is not None
        return job.created_at, job.started_at, job.finished_at


def done_times(url: str, job_id: str) -> list[tuple[datetime, float]]:
    """(when done, seconds it took) of each shard of a job."""
    with session_scope(url) as session:
        rows = session.query(JobShard).filter(JobShard.job_id == job_id, JobShard.state == ShardState.DONE)
        return sorted((row.updated_at, row.seconds or 0.0) for row in rows)


def head_of_line(args: argparse.Namespace) -> list[list[Any]]:
    rows = []
    for workers in (1, 2):
        for label, window in (("all at once", ALL_AT_ONCE), ("windowed", args.window)):
            with stack_with(workers, window) as (stack, other, url, models):
                big = stack.client.submit_sample(sample_body(models[0], args.shards, args.shard_size))["id"]
                time.sleep(2)
                small = other.submit_train(train_body(1))["id"]
                common.wait_job(stack, big)
                other.wait(small, timeout=3600, poll=0.2, max_poll=1.0)
                created, started, _ = job_row(url, small)
                _, big_started, big_finished = job_row(url, big)
                shard = sum(s for _, s in done_times(url, big)) / args.shards
                wait = (started - created).total_seconds()
                run = (big_finished - big_started).total_seconds()
                rows.append(
                    [
                        workers,
                        label,
                        round(run, 1),
                        round(wait, 2),
                        round(wait / run, 3),
                        round(wait / shard, 1),
                    ]
                )
    return rows


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when every tenant got the same, 1/n when one got everything."""
    total, squares = sum(values), sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def two_tenants(args: argparse.Namespace) -> list[list[Any]]:
    rows = []
    for label, window in (("all at once", ALL_AT_ONCE), ("windowed", args.window)):
        with stack_with(1, window) as (stack, other, url, models):
            body = sample_body(models[0], args.shards, args.shard_size)
            a = stack.client.submit_sample(body)["id"]
            b = other.submit_sample({**body, "model": models[1]})["id"]
            common.wait_job(stack, a)
            other.wait(b, timeout=3600, poll=0.2, max_poll=1.0)
            times = {job: [t for t, _ in done_times(url, job)] for job in (a, b)}
            start = min(job_row(url, j)[1] for j in (a, b))
            both_until = min(ts[-1] for ts in times.values())  # until the first job ended, both had backlog
            span = (both_until - start).total_seconds()
            for quarter in (0.25, 0.5, 0.75, 1.0):
                cut = start.timestamp() + span * quarter
                counts = [float(sum(t.timestamp() <= cut for t in ts)) for ts in times.values()]
                share = counts[0] / sum(counts) if sum(counts) else float("nan")
                rows.append(
                    [
                        label,
                        f"{quarter:.0%}",
                        int(counts[0]),
                        int(counts[1]),
                        round(share, 2),
                        round(jain(counts), 3),
                    ]
                )
    return rows


def claim_gaps(url: str, job_id: str) -> float:
    """Mean seconds from a shard's DONE to the same worker's next claim: a unit's cost besides its work."""
    with session_scope(url) as session:
        rows = session.query(JobShard).filter(JobShard.job_id == job_id, JobShard.state == ShardState.DONE)
        by_worker: dict[str, list[tuple[datetime, datetime]]] = {}
        for row in rows:
            if row.claimed_at is not None:
                by_worker.setdefault(row.worker or "", []).append((row.claimed_at, row.updated_at))
    gaps = []
    for spans in by_worker.values():
        spans.sort()
        gaps += [(nxt[0] - cur[1]).total_seconds() for cur, nxt in zip(spans, spans[1:], strict=False)]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def alone(args: argparse.Namespace) -> list[list[Any]]:
    """`--rounds` rounds of (all at once, windowed), interleaved (ABAB): medians, and the median ratio."""
    rows = []
    for workers in (1, 2):
        rates: dict[str, list[float]] = {"all at once": [], "windowed": []}
        gaps: dict[str, list[float]] = {"all at once": [], "windowed": []}
        for _ in range(args.rounds):
            for label, window in (("all at once", ALL_AT_ONCE), ("windowed", args.window)):
                with stack_with(workers, window) as (stack, _other, url, models):
                    body = sample_body(models[0], args.shards, args.shard_size)
                    job = stack.client.submit_sample(body)["id"]
                    common.wait_job(stack, job)
                    _, started, finished = job_row(url, job)
                    rates[label].append(args.shards * args.shard_size / (finished - started).total_seconds())
                    gaps[label].append(claim_gaps(url, job))
        ratios = [w / a for w, a in zip(rates["windowed"], rates["all at once"], strict=True)]
        rows.append(
            [
                workers,
                args.rounds,
                round(common.median(rates["all at once"])),
                round(common.median(rates["windowed"])),
                round(common.median(ratios), 3),
                f"{min(ratios):.2f}-{max(ratios):.2f}",
                round(1000 * common.median(gaps["all at once"]), 1),
                round(1000 * common.median(gaps["windowed"]), 1),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    global SERVICES
    args = parse_args(argv)
    SERVICES = args.services
    common.limit_threads(1)
    where = "PostgreSQL + Redis" if args.services else "embedded default"
    print(f"shards {args.shards} x {args.shard_size} samples; window {args.window}; {where}, CPU")
    tables = set(args.tables.split(","))
    if "1" in tables:
        common.print_table(
            ["workers", "release", "big run s", "small wait s", "wait / run", "wait / shard"],
            head_of_line(args),
            "1. Head-of-line: tenant B's 1-epoch training job, 2 s after tenant A's big sampling job",
        )
    if "2" in tables:
        common.print_table(
            ["release", "time", "A done", "B done", "A share", "Jain"],
            two_tenants(args),
            "2. Two tenants, one big sampling job each, submitted together (1 worker)",
        )
    if "3" in tables:
        common.print_table(
            [
                "workers",
                "rounds",
                "all at once samples/s",
                "windowed samples/s",
                "windowed / all",
                "range",
                "gap ms all",
                "gap ms windowed",
            ],
            alone(args),
            "3. One big sampling job alone",
        )
    if "4" in tables:
        import cluster_sim

        cluster_sim.main(["--seconds", "5"] if args.quick else ["--old-path"])


if __name__ == "__main__":
    main()
