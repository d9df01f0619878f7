"""The worker's `run_shard` next to the bare loop, in one process: `python bench/run_shard_inprocess.py`.

Both make the same shard of the service's 8x8 MLP shape (untrained: the cost does not depend on the weights):
the bare loop with `generate_shard` + `write_shard` into a file, the service's code with `run_shard` into a
local folder (chunks, the shard's I/O thread with overlap on or off, the sha256, `put_stream`). Rounds are
interleaved (ABC, CBA, ...), the first one warms up; medians are printed. What this leaves out of the
service, the Celery worker process, its SQL and its broker, is what `sample_throughput.py` measures with it:
a difference between the two benchmarks is in the worker process, not in `run_shard`'s code. Prints only.

    OMP_NUM_THREADS=1 .venv/bin/python bench/run_shard_inprocess.py --format webdataset --per-class 3000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import torch

from synthjobs.ledger.tables import JobShard
from synthjobs.malloc import tune_malloc
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from training.checkpoint import LoadedCheckpoint
from training.config import TrainConfig
from training.model import CVAE
from worker.formats import write_shard
from worker.pipelines import sample as sample_pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="npz", choices=["npz", "webdataset"])
    p.add_argument("--per-class", type=int, default=10_000, help="samples per class (10 classes)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--malloc", action="store_true", help="tune glibc malloc first, as the worker does")
    args = p.parse_args()
    if args.malloc:
        print("malloc tuned:", tune_malloc())
    torch.set_num_threads(1)
    config = TrainConfig()
    model = CVAE(64, 10, config.latent_dim, image_shape=(1, 8, 8)).eval()
    loaded = LoadedCheckpoint(model, config, tuple(str(i) for i in range(10)), (1, 8, 8), {}, None, None)
    sample_pipeline._models[("bench", "cpu")] = loaded
    counts = [args.per_class] * 10
    params = {"model_id": "bench", "seed": 0, "counts": counts, "format": args.format, "shuffle": True}
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = open_storage(Settings(home=root, storage_url=(root / "store").as_uri()))

        def bare(index: int) -> None:
            images, labels = sample_pipeline.generate_shard(loaded, params, index, counts, cpu)
            with (root / f"bare-{index}").open("wb") as out:
                write_shard(out, args.format, images, labels, f"bench-{index:05d}")

        def service(index: int, overlap: bool) -> None:
            row = JobShard(job_id=str(uuid.uuid4()), index=index, count=sum(counts))
            row.per_class = {"counts": counts}
            settings = Settings(home=root, sample_overlap=overlap)
            sample_pipeline.run_shard(row, params, settings, store, cpu)

        cases = {
            "bare loop": bare,
            "run_shard, overlap off": lambda i: service(i, False),
            "run_shard, overlap on": lambda i: service(i, True),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for index in range(args.rounds + 1):
            for name in list(cases) if index % 2 else list(cases)[::-1]:
                wall, own = time.perf_counter(), time.process_time()
                cases[name](index)
                if index:
                    times[name].append((time.perf_counter() - wall, time.process_time() - own))
    bare_wall = statistics.median(t[0] for t in times["bare loop"])
    print(f"{sum(counts):,}-sample {args.format} shard, {args.rounds} interleaved rounds, medians:")
    for name, values in times.items():
        wall = statistics.median(t[0] for t in values)
        own = statistics.median(t[1] for t in values)
        ratio = bare_wall / wall
        print(f"  {name:24s} wall {1e3 * wall:8.1f} ms  CPU {1e3 * own:8.1f} ms  bare / this {ratio:.3f}")


if __name__ == "__main__":
    main()
