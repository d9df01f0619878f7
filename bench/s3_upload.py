"""Where a shard's time goes on S3 (moto) next to a local folder: `python bench/s3_upload.py`.

One process, one thread doing the work: for `--shards` digits shards of `--shard-size` (the service's 8x8 MLP
shape, untrained: the cost does not depend on the weights), the time to generate it (`generate_chunks`),
encode it (`open_encoder`, into a spool like the worker's), hash it (sha256), then store it with `put_stream`
into a local folder and into moto's server on 127.0.0.1 (its own process here, so its CPU is counted apart),
with and without the worker's sha256 passed as the checksum. For each step: its wall time, the CPU of this
process (for S3: boto3 and s3transfer's threads: signing hashes the body, the checksum, HTTP) and the CPU of
moto's process meanwhile (parsing, MD5 for the ETag, storing). Rounds alternate the stores. With
`--run-shard`: the worker's own `run_shard` (chunks, the I/O thread, the upload) with overlap off and on, into
each store, interleaved. Prints only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

import common
import numpy as np
import torch

from synthjobs.devtools import processes
from synthjobs.devtools.stack import S3_TEST_ENV
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from synthjobs.storage.base import Storage
from training.config import TrainConfig
from training.model import build_model
from training.sample import generate_chunks, shard_generator
from worker.formats import open_encoder

T = TypeVar("T")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in a process of its own (so its CPU is counted apart), with bucket `bench`."""
    import boto3

    port = processes.free_port()
    os.environ.update(S3_TEST_ENV)
    moto = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
            return moto, endpoint
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    moto.terminate()
    raise RuntimeError("moto's server did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=6)
    p.add_argument("--shard-size", type=int, default=100_000)
    p.add_argument("--run-shard", action="store_true", help="time the worker's run_shard, overlap off / on")
    args = p.parse_args()
    common.limit_threads(1)
    torch.manual_seed(0)
    model = build_model(TrainConfig(), 64, 10, image_shape=(1, 8, 8)).eval()
    labels = torch.arange(args.shard_size) % 10
    rows: dict[str, list[tuple[float, float, float]]] = {}
    if args.run_shard:
        run_shard_rounds(args, model)
        return
    moto, endpoint = start_moto()

    def timed(name: str, fn: Callable[[], T]) -> T:
        wall, own, server = time.perf_counter(), time.process_time(), common.cpu_seconds(moto.pid)
        out = fn()
        spent = (time.perf_counter() - wall, time.process_time() - own, common.cpu_seconds(moto.pid) - server)
        rows.setdefault(name, []).append(spent)
        return out

    size = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = open_storage(Settings(home=Path(tmp), storage_url=(Path(tmp) / "store").as_uri()))
            s3 = open_storage(Settings(storage_url="s3://bench/profile", s3_endpoint_url=endpoint))
            stores: list[tuple[str, Storage, bool]] = [
                ("local", local, False),
                ("S3, botocore hashes the checksum", s3, False),
                ("S3, the worker's sha256 as the checksum", s3, True),
            ]
            for index in range(args.shards + 1):  # the first shard warms up (imports, connections)
                gen = shard_generator(0, index)
                chunks = timed("generate", lambda g=gen: list(generate_chunks(model, labels, generator=g)))
                with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spool:

                    def encode(chunks: list[np.ndarray] = chunks, spool: IO[bytes] = spool) -> None:
                        encoder = open_encoder(spool, "npz", labels.numpy(), (8, 8), "p")
                        for chunk in chunks:
                            encoder.add(chunk)
                        encoder.close()

                    timed("encode (npz)", encode)
                    spool.seek(0)
                    digest = timed("sha256", lambda s=spool: hashlib.sha256(s.read()).hexdigest())
                    key = f"jobs/x/shard-{index:05d}.npz"
                    for name, storage, given in stores if index % 2 else stores[::-1]:
                        spool.seek(0)
                        sha = digest if given else None
                        timed(
                            f"put_stream: {name}",
                            lambda st=storage, sp=spool, sh=sha, k=key: st.put_stream(k, sp, sha256=sh),
                        )
                    size = spool.seek(0, 2)
                if index == 0:
                    rows.clear()
    finally:
        moto.terminate()
        moto.wait()
    print(
        f"{args.shards} shards of {args.shard_size:,} digits ({size / 1e6:.1f} MB npz each), "
        "ms per shard (median):"
    )
    print("| step | wall | CPU of this process | CPU of moto's process |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        wall, own, other = (1e3 * common.median([v[i] for v in values]) for i in range(3))
        print(f"| {name} | {wall:.1f} | {own:.1f} | {other:.1f} |")


def run_shard_rounds(args: argparse.Namespace, model: torch.nn.Module) -> None:
    """The worker's `run_shard` itself, overlap off and on, into the local folder and S3, interleaved."""
    import uuid

    from synthjobs.ledger.tables import JobShard
    from training.checkpoint import LoadedCheckpoint
    from worker.pipelines import sample as sample_pipeline

    per_class = [args.shard_size // 10] * 10
    loaded = LoadedCheckpoint(
        model, TrainConfig(), tuple(str(i) for i in range(10)), (1, 8, 8), {}, None, None
    )
    sample_pipeline._models[("bench", "cpu")] = loaded
    rows: dict[str, list[tuple[float, float, float]]] = {}
    moto, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stores = {
                "local": open_storage(Settings(home=Path(tmp), storage_url=(Path(tmp) / "store").as_uri())),
                "S3": open_storage(Settings(storage_url="s3://bench/profile", s3_endpoint_url=endpoint)),
            }
            cases = [(name, overlap) for overlap in (False, True) for name in stores]
            params = {"model_id": "bench", "seed": 0, "counts": per_class, "format": "npz", "shuffle": True}
            for index in range(args.shards + 1):
                for name, overlap in cases if index % 2 else cases[::-1]:
                    row = JobShard(job_id=str(uuid.uuid4()), index=index, count=sum(per_class))
                    row.per_class = {"counts": per_class}
                    settings = Settings(home=Path(tmp), sample_overlap=overlap)
                    wall, own, server = time.perf_counter(), time.process_time(), common.cpu_seconds(moto.pid)
                    sample_pipeline.run_shard(row, params, settings, stores[name], torch.device("cpu"))
                    spent = (
                        time.perf_counter() - wall,
                        time.process_time() - own,
                        common.cpu_seconds(moto.pid) - server,
                    )
                    if index:  # the first round warms up
                        rows.setdefault(f"{name}, overlap {'on' if overlap else 'off'}", []).append(spent)
    finally:
        moto.terminate()
        moto.wait()
    print(f"\nrun_shard, {args.shards} rounds of one {args.shard_size:,}-sample npz shard each (median ms):")
    print("| case | wall | CPU of this process | CPU of moto's process |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        wall, own, other = (1e3 * common.median([v[i] for v in values]) for i in range(3))
        print(f"| {name} | {wall:.1f} | {own:.1f} | {other:.1f} |")


if __name__ == "__main__":
    main()
