"""A training epoch's bookkeeping in the worker, old way against new: `python bench/epoch_bookkeeping.py`.

Per epoch the worker records the job's progress and an "epoch" event. It used to take two transactions
(`ctx.progress(force=True)` then `ctx.event(...)`); now it takes one (`ctx.progress(events=[...])`). Both run
side by side in this process on one RUNNING job, in alternating rounds (ABAB), on a fresh SQLite file by
default or on `--database-url` (which must name a scratch database: it is migrated and a job is added).
Prints the median ms per epoch of each and their ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.migrate import upgrade_database
from synthjobs.ledger.tables import JobKind
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from worker.context import JobContext

EPOCH = {"epoch": 1, "epochs": 200, "train_loss": 30.1, "heldout_neg_elbo": 29.0, "seconds": 0.02}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", help="a scratch database (default: a fresh SQLite file)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--per-round", type=int, default=100)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-epoch-"))
    url = args.database_url or f"sqlite:///{tmp / 'jobs.db'}"
    upgrade_database(url)
    with session_scope(url) as session:
        job_id = jobs.create_job(session, JobKind.TRAIN, {}).id
    with session_scope(url) as session:
        assert jobs.claim_job(session, job_id, "bench", 600)
    settings = Settings(home=tmp / "home", database_url=url)
    ctx = JobContext(job_id, {}, settings, LocalStorage(tmp / "store"), torch.device("cpu"), worker="bench")
    data = {**EPOCH, "device": "cpu"}

    def two() -> None:
        ctx.progress(0.5, "epoch 1/200", force=True)
        ctx.event("epoch", "epoch 1/200: train loss 30.10, held-out -ELBO 29.00", data)

    def one() -> None:
        ctx.progress(0.5, "epoch 1/200", events=[("epoch", "epoch 1/200: ...", data)])

    cases: dict[str, Callable[[], None]] = {"two transactions (before)": two, "one transaction (after)": one}
    ms: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            started = time.perf_counter()
            for _ in range(args.per_round):
                fn()
            ms[name].append(1e3 * (time.perf_counter() - started) / args.per_round)
    print(f"database: {url.split(':', 1)[0]}; {args.rounds} rounds of {args.per_round} epochs, ABAB")
    for name, values in ms.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name}: median {statistics.median(values):.3f} ms per epoch (rounds {rounds})")
    before, after = (statistics.median(v) for v in ms.values())
    print(f"one / two transactions: {after / before:.2f} of the time")


if __name__ == "__main__":
    main()
