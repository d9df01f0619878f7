"""Per-shard seconds of one sampling job on a worker that already ran one: `python bench/shard_seconds.py`.

`sample_throughput.py` starts a fresh worker for each job (to read that worker's peak memory), so its
per-shard means include a fresh process's first costs, with the warm-up thread running next to the first
shards. Here one embedded stack trains a 2-epoch model, then samples `--total` digits in shards of
`--shard-size` on the same worker, and the shards' own `seconds` (run_shard's, from the ledger) are
printed in claim order. Prints only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import common
from sqlalchemy import text

from synthjobs.ledger.db import session_scope


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--total", type=int, default=10_000_000)
    p.add_argument("--shard-size", type=int, default=100_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, common.running_stack(Path(tmp), workers=1) as stack:
        train = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 0}
        model = common.wait_job(stack, stack.client.submit_train(train)["id"])["result"]["model_id"]
        body = {"model": model, "total": args.total, "shard_size": args.shard_size, "seed": 0}
        job = common.wait_job(stack, stack.client.submit_sample(body)["id"])
        query = text("SELECT seconds FROM job_shards WHERE job_id = :job ORDER BY claimed_at")
        with session_scope(f"sqlite:///{Path(tmp).resolve() / 'synthjobs.db'}") as session:
            seconds = [float(row[0]) for row in session.execute(query, {"job": job["id"]})]
    seconds_of_job = common.job_seconds(job)
    print(f"{args.total:,} digits in {len(seconds)} shards, job {seconds_of_job:.2f} s")
    print(f"  = {args.total / seconds_of_job:,.0f} samples/s (first claim to manifest)")
    print("  first five shards, ms:", [round(1e3 * s) for s in seconds[:5]])
    print(f"  per shard in run_shard: mean {1e3 * statistics.mean(seconds):.1f} ms", end="")
    print(f", median {1e3 * statistics.median(seconds):.1f} ms")


if __name__ == "__main__":
    main()
