"""Table 4 of issue 12: the ledger + dispatcher at cluster scale, simulated on one machine.

`python bench/scheduling.py --tables 4` (or `python bench/cluster_sim.py`) runs 8, 32 and 128 simulated
workers against real PostgreSQL (a fresh database) and Redis (db SYNTHJOBS_TEST_REDIS_DB). A simulated
worker is a thread doing what the shard task does, with the same functions: consume a message from the
Redis queue (kombu, the Celery queue's own transport), claim the shard by conditional update
(`ledger.shards.claim_shard`), "work" (a sleep of `--unit-ms`), record it and release the next units in
one transaction (`ledger.shards.complete_shard` + `broker.dispatch.release_in`), publish what was released
(`broker.dispatch.publish_released`, i.e. Celery's send_task), claim the finalizer after the last shard.
The sleep takes no CPU, so the two cores measure coordination only.

Four tenants submit the same number of units in jobs of different sizes (A: 1 job, B: 4, C: 16, D: 64),
all at once, over a ledger that already holds `--history` DONE shards of finished jobs (a service that has
run a while). Printed per run: units completed per second, coordination overhead per unit (a worker's time
per unit minus the sleep), each tenant's wait (release -> claim of its units; submit -> first claim of its
jobs), Jain's fairness index of units done per tenant, and where the time goes: CPU per unit of this
process (the simulated workers' client side: SQLAlchemy, kombu), of the PostgreSQL backends serving this
database, and of Redis, plus how many backends wait on the dispatcher's advisory lock. EXPLAIN ANALYZE of
the hot queries is printed after the table. `--old-path` runs the dispatcher as it was before this slice
(completion and release in two transactions, no partial index) for a side-by-side row.

Prints only; asserts nothing. Each run takes `--seconds` plus a few seconds of setup.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402
from celery import Celery  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from synthjobs.broker.dispatch import dispatch_shards, publish_released  # noqa: E402
from synthjobs.broker.queue import SAMPLE_SHARD_TASK, make_sender, queue_for  # noqa: E402
from synthjobs.ledger import db, dispatch, jobs, shards  # noqa: E402
from synthjobs.ledger.retry import in_transaction  # noqa: E402
from synthjobs.ledger.tables import JobState  # noqa: E402
from synthjobs.rules import tenant_policy  # noqa: E402
from synthjobs.rules.kinds import SAMPLE  # noqa: E402
from synthjobs.settings import Settings  # noqa: E402

TENANTS = {"A": 1, "B": 4, "C": 16, "D": 64}  # tenant: how many jobs its units are split into
MAX_CONNECTIONS = 48  # PostgreSQL here allows 100 in all, shared with other sessions: workers share a pool


@dataclass
class Tally:
    """What the simulated workers saw, merged from every thread (appends under the GIL are atomic)."""

    claimed: list[tuple[str, int, float]] = field(default_factory=list)  # (job id, shard, when claimed)
    done: list[tuple[str, float]] = field(default_factory=list)  # (job id, when recorded)
    phases: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="8,32,128", help="simulated worker counts (comma-separated)")
    p.add_argument("--seconds", type=float, default=15.0, help="measured time per run")
    p.add_argument("--unit-ms", type=float, default=50.0, help="the sleep that stands for a unit's work")
    p.add_argument("--history", type=int, default=200_000, help="DONE shards of finished jobs already there")
    p.add_argument(
        "--old-path", action="store_true", help="also run the pre-slice dispatcher at the top count"
    )
    return p.parse_args(argv)


@contextmanager
def fresh_services() -> Iterator[tuple[str, str]]:
    """(database URL, broker URL): a new migrated PostgreSQL database and a flushed Redis db."""
    from tests.support import services

    with (
        services.fresh_postgres_database(services.PG_ADMIN_URL, "bench_cluster") as url,
        services.flushed_redis(services.REDIS_URL, services.redis_db()) as broker,
    ):
        yield url, broker


def install_pool(url: str, size: int) -> None:
    """Give this process's engine for `url` a pool of `size`: one connection per worker, up to the cap."""
    engine = create_engine(url, pool_size=size, max_overflow=0, pool_timeout=120)
    db._engines[(os.getpid(), url)] = engine


def seed_history(url: str, count: int) -> None:
    """`count` DONE shards of SUCCEEDED jobs (1,000 shards each), as a service that has run a while has."""
    with db.session_scope(url) as session:
        for start in range(0, count, 1000):
            job = jobs.create_job(session, SAMPLE.name, {"history": True}, tenant="A")
            job.state = JobState.SUCCEEDED.value
            session.flush()
            session.execute(
                text(
                    "INSERT INTO job_shards (job_id, index, state, count, per_class, attempts, updated_at,"
                    " released_at) SELECT :job, i, 'DONE', 1, '{}', 1, now(), now()"
                    " FROM generate_series(0, :n - 1) AS i"
                ),
                {"job": job.id, "n": min(1000, count - start)},
            )
    with db.get_engine(url).connect() as connection:
        connection.execute(text("ANALYZE"))
        connection.commit()


def submit_backlog(url: str, units_per_tenant: int) -> dict[str, str]:
    """Every tenant's jobs, all QUEUED at once; {job id: tenant}."""
    owner: dict[str, str] = {}
    with db.session_scope(url) as session:
        for tenant, count in TENANTS.items():
            size = max(1, units_per_tenant // count)
            for _ in range(count):
                job = jobs.create_job(session, SAMPLE.name, {"simulated": True}, tenant=tenant)
                session.flush()
                shards.create_shards(session, job.id, [[1]] * size)
                owner[job.id] = tenant
    return owner


def simulated_worker(
    name: str, url: str, settings: Settings, stop: threading.Event, tally: Tally, args: argparse.Namespace
) -> None:
    """One worker: pop the next message from the Redis list Celery published it to, run the unit.

    It pops with BRPOP itself (one connection per worker) and decodes kombu's envelope: kombu's own
    consumers, one connection per thread, left messages in the list while their gets timed out (seen
    here: 15 messages queued, workers idle), which measured kombu's polling, not the ledger.
    Acknowledgement (kombu's unacked hash) is therefore not simulated.
    """
    import redis

    sender = make_sender(settings)
    client = redis.Redis.from_url(args.broker)
    queue = queue_for(SAMPLE_SHARD_TASK, settings)  # the sampling lane, where the dispatcher publishes
    while not stop.is_set():
        t0 = time.perf_counter()
        popped = client.brpop([queue], timeout=1)
        if popped is None:
            tally.phases["idle (empty pop)"].append(time.perf_counter() - t0)
            continue
        envelope = json.loads(popped[1])
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        tally.phases["consume"].append(time.perf_counter() - t0)
        run_unit(kwargs["job_id"], kwargs["shard"], name, url, settings, sender, tally, args)
    client.close()


def run_unit(
    job_id: str,
    index: int,
    name: str,
    url: str,
    settings: Settings,
    sender: Celery,
    tally: Tally,
    args: argparse.Namespace,
) -> None:
    """The shard task's ledger and broker calls, in its order, around a sleep instead of generation."""
    unit = args.unit_ms / 1000
    outcome = {"key": f"sim/{job_id}/{index}", "sha256": "0" * 64, "size": 1, "seconds": unit, "quality": {}}
    t1 = time.perf_counter()
    claimed = in_transaction(
        url,
        lambda s: shards.claim_shard(s, job_id, index, name, settings.lease_seconds, 5) is not None,
        what="claiming",
    )
    t2 = time.perf_counter()
    tally.phases["claim"].append(t2 - t1)
    if not claimed:
        return
    tally.claimed.append((job_id, index, time.time()))
    time.sleep(unit)
    t3 = time.perf_counter()
    if args.current_old_path:  # as before this slice: record, commit, then release in a second transaction
        recorded = in_transaction(
            url, lambda s: shards.complete_shard(s, job_id, index, name, **outcome), what="recording"
        )
        t4 = time.perf_counter()
        dispatch_shards(sender, settings)
    else:
        recorded, released = in_transaction(
            url,
            lambda s: (
                shards.complete_shard(s, job_id, index, name, **outcome),
                dispatch.release_next(s, settings.shard_window, tenant_policy.weights(settings)),
            ),
            what="recording",
        )
        t4 = time.perf_counter()
        publish_released(sender, released, settings)
    t5 = time.perf_counter()
    tally.phases["record(+release)"].append(t4 - t3)
    tally.phases["(release+)publish"].append(t5 - t4)
    if recorded:
        tally.done.append((job_id, time.time()))
        in_transaction(url, lambda s: finalize_if_last(s, job_id, name, settings), what="finalizing")
        tally.phases["finalize"].append(time.perf_counter() - t5)


def finalize_if_last(session: Session, job_id: str, worker: str, settings: Settings) -> None:
    """The finalizer's claim (exactly once) and the job's end, without the manifest the real one writes."""
    if shards.claim_finalizer(session, job_id, worker, settings.lease_seconds):
        # As worker.tasks._finalize: the claim sets `finalizer`, not `worker`, so no worker guard here (with
        # one, every finish raised InvalidTransition and took its simulated worker down).
        jobs.finish_job(session, job_id, JobState.SUCCEEDED, result={"simulated": True})


class LockWatch:
    """Samples pg_stat_activity of one database: backends waiting on the advisory lock, and active ones."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_size=1, max_overflow=0)
        self.samples: list[tuple[int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = text(
            "SELECT count(*) FILTER (WHERE wait_event = 'advisory'),"
            " count(*) FILTER (WHERE state = 'active') - 1"
            " FROM pg_stat_activity WHERE datname = current_database()"
        )
        with self.engine.connect() as connection:
            while not self.stop.wait(0.05):
                row = connection.execute(query).one()
                self.samples.append((int(row[0]), int(row[1])))
                connection.commit()

    def __enter__(self) -> LockWatch:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()

    def means(self) -> tuple[float, float]:
        if not self.samples:
            return 0.0, 0.0
        return (
            statistics.fmean(s[0] for s in self.samples),
            statistics.fmean(s[1] for s in self.samples),
        )


def backend_cpu_seconds(url: str) -> float:
    """CPU seconds of the PostgreSQL backends on this database now (they live as long as the pool)."""
    with db.get_engine(url).connect() as connection:
        pids = connection.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        for pid in pids:
            try:
                total += common.cpu_seconds(int(pid))
            except (FileNotFoundError, PermissionError):
                pass
        return total


def redis_cpu_seconds(broker: str) -> float:
    """Redis server CPU seconds since it started (the whole server: other sessions' use included)."""
    import redis

    client = redis.Redis.from_url(broker)
    info = client.info("cpu")
    client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def jain(values: list[float]) -> float:
    total, squares = sum(values), sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def drop_index(url: str) -> None:
    with db.get_engine(url).connect() as connection:
        connection.execute(text("DROP INDEX ix_job_shards_undone"))
        connection.commit()


def run_one(workers: int, args: argparse.Namespace, old_path: bool = False) -> dict[str, Any]:
    """One simulated cluster of `workers` for `args.seconds`; its figures and the hot queries' plans."""
    args.current_old_path = old_path
    expected = workers / (args.unit_ms / 1000)  # units/s if coordination were free
    units_per_tenant = int(expected * args.seconds * 1.5 / len(TENANTS)) + 64
    with fresh_services() as (url, broker):
        args.broker = broker
        install_pool(url, min(workers, MAX_CONNECTIONS))
        if old_path:
            drop_index(url)
        seed_history(url, args.history)
        owner = submit_backlog(url, units_per_tenant)
        settings = Settings(
            database_url=url,
            broker_url=broker,
            shard_window=min(10_000, 2 * workers),
            lease_seconds=60,
        )
        sender = make_sender(settings)
        stop, tally = threading.Event(), Tally()
        threads = [
            threading.Thread(target=simulated_worker, args=(f"sim-{i}", url, settings, stop, tally, args))
            for i in range(workers)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # connections opened, consumers waiting
        pg0, redis0, own0 = backend_cpu_seconds(url), redis_cpu_seconds(broker), common.own_cpu_seconds()
        start = time.time()
        with LockWatch(url) as watch:
            dispatch_shards(sender, settings)  # what the submit does: fill the window
            time.sleep(args.seconds)
            elapsed = time.time() - start
            done_in_window = [job for job, when in tally.done if when <= start + elapsed]
            pg1, redis1, own1 = backend_cpu_seconds(url), redis_cpu_seconds(broker), common.own_cpu_seconds()
        stop.set()
        for thread in threads:
            thread.join()
        plans = explain_hot_queries(url, settings) if workers == max(parse_workers(args)) else []
        released = released_times(url)
        created = created_times(url)
    n = len(done_in_window)
    per_tenant: dict[str, float] = {t: 0.0 for t in TENANTS}
    for job in done_in_window:
        per_tenant[owner[job]] += 1
    unit_waits: dict[str, list[float]] = defaultdict(list)
    first_claim: dict[str, float] = {}
    for job, index, when in tally.claimed:
        if (job, index) in released:
            unit_waits[owner[job]].append(when - released[(job, index)])
        first_claim[job] = min(first_claim.get(job, when), when)
    job_waits: dict[str, list[float]] = defaultdict(list)
    for job, when in first_claim.items():
        job_waits[owner[job]].append(when - created[job])
    lock_waiting, active = watch.means()
    rate = n / elapsed
    return {
        "workers": workers,
        "path": "2 txns, no index" if old_path else "current",
        "rate": rate,
        "overhead_ms": (workers * elapsed / n - args.unit_ms / 1000) * 1000 if n else float("nan"),
        "unit_waits": unit_waits,
        "job_waits": job_waits,
        "jain": jain(list(per_tenant.values())),
        "own_ms": (own1 - own0) / n * 1000 if n else float("nan"),
        "pg_ms": (pg1 - pg0) / n * 1000 if n else float("nan"),
        "redis_ms": (redis1 - redis0) / n * 1000 if n else float("nan"),
        "lock_waiting": lock_waiting,
        "active": active,
        "phases": {k: statistics.fmean(v) * 1000 for k, v in tally.phases.items() if v},
        "plans": plans,
    }


def released_times(url: str) -> dict[tuple[str, int], float]:
    with db.session_scope(url) as session:
        rows = session.execute(
            text("SELECT job_id, index, released_at FROM job_shards WHERE released_at IS NOT NULL")
        ).all()
    return {(job, index): when.timestamp() for job, index, when in rows}


def created_times(url: str) -> dict[str, float]:
    with db.session_scope(url) as session:
        rows = session.execute(text("SELECT id, created_at FROM jobs")).all()
    return {job: when.timestamp() for job, when in rows}


def explain_hot_queries(url: str, settings: Settings) -> list[tuple[str, str]]:
    """EXPLAIN ANALYZE of the queries every unit runs, on the ledger as the run left it."""
    with db.session_scope(url) as session:
        job_id = session.execute(
            text(
                "SELECT job_id FROM job_shards WHERE state = 'PENDING'"
                " GROUP BY job_id ORDER BY count(*) DESC LIMIT 1"
            )
        ).scalar()
    statements = [
        ("backlogs() (every dispatch, under the lock)", dispatch.backlogs_statement(settings.shard_window)),
        ("shard_counts() (every completion: progress)", shards.shard_counts_statement(job_id or "")),
    ]
    out = []
    engine = db.get_engine(url)
    with engine.connect() as connection:
        for label, statement in statements:
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            plan = connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS OFF) {compiled}")).scalars().all()
            out.append((label, "\n".join(plan)))
        connection.rollback()
    return out


def parse_workers(args: argparse.Namespace) -> list[int]:
    return [int(w) for w in str(args.workers).split(",")]


def fmt_waits(waits: dict[str, list[float]], scale: float = 1000) -> str:
    cells = []
    for tenant in TENANTS:
        values = waits.get(tenant, [])
        cells.append(f"{tenant} {percentile(values, 0.5) * scale:.0f}/{percentile(values, 0.99) * scale:.0f}")
    return " ".join(cells)


def table(args: argparse.Namespace) -> None:
    """Run every configuration and print table 4, the per-phase times and the hot queries' plans."""
    results = [run_one(w, args) for w in parse_workers(args)]
    if args.old_path:
        results.append(run_one(max(parse_workers(args)), args, old_path=True))
    idle = [f"{r['workers']} workers ({r['path']})" for r in results if not r["rate"]]
    if idle:  # a table of zeros reads like a figure; it means the simulation is not wired to the service
        sys.exit(f"no unit completed in: {', '.join(idle)}: do the workers pop the queue shards go to?")
    print(
        f"unit = {args.unit_ms:.0f} ms sleep; {args.seconds:.0f} s per run; "
        f"history {args.history} DONE shards; "
        f"tenants {', '.join(f'{t}: {n} jobs' for t, n in TENANTS.items())} of equal total units; "
        f"window 2 x workers; pool min(workers, {MAX_CONNECTIONS})"
    )
    common.print_table(
        [
            "workers",
            "path",
            "units/s",
            "ideal",
            "overhead ms/unit",
            "unit wait p50/p99 ms (release->claim)",
            "job start p50/p99 s",
            "Jain",
            "CPU ms/unit: sim | PG | Redis",
            "lock waiters / active",
        ],
        [
            [
                r["workers"],
                r["path"],
                round(r["rate"]),
                round(r["workers"] / (args.unit_ms / 1000)),
                round(r["overhead_ms"], 1),
                fmt_waits(r["unit_waits"]),
                fmt_waits(r["job_waits"], 1),
                round(r["jain"], 3),
                f"{r['own_ms']:.2f} | {r['pg_ms']:.2f} | {r['redis_ms']:.2f}",
                f"{r['lock_waiting']:.1f} / {r['active']:.1f}",
            ]
            for r in results
        ],
        "4. Cluster-scale simulation: PostgreSQL + Redis, simulated workers (sleep as work)",
    )
    print("\nmean ms per unit in each phase (per worker):")
    for r in results:
        print(
            f"  {r['workers']:>4} {r['path']:<24} "
            + "  ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        )
    for r in results:
        for label, plan in r["plans"]:
            print(f"\nEXPLAIN ANALYZE, {label}, at {r['workers']} workers:\n{plan}")


def main(argv: list[str] | None = None) -> None:
    common.limit_threads(1)
    table(parse_args(argv))


if __name__ == "__main__":
    main()
