"""Sampling throughput of the service next to a bare PyTorch loop: `python bench/sample_throughput.py`.

Everything runs in this one process run, on the same device, from the same checkpoints:

- bare loop: a fresh Python process (like a fresh worker) loads the trained model's checkpoint with
  `training.checkpoint.load_checkpoint`, generates every shard of the same request with
  `worker.pipelines.sample.generate_shard` (labels shuffled as the API's default `shuffle` has them, latents
  from (seed, shard)) and writes it with `worker.formats.write_shard` to local disk. Only the shard loop is
  timed. It runs before and after the service; the ratio uses the mean. Its npz shards are checked byte for
  byte against the service's (sha256);
- service: a sampling job through the API, the broker and freshly started Celery worker(s) (solo pool),
  into storage. Throughput = samples / (finished_at - started_at) of the job: from the first shard claimed
  to the manifest written, so per-shard SQL, broker round trips, sha256, quality scoring and the finalizer
  (which reads every shard back to check it) are all in it.

Runs: digits `--total` samples (npz, default shard size) with one worker and with two; `--small` samples
in the `webdataset` format and into S3 (moto's server on 127.0.0.1) next to the local folder; `--conv-total`
samples from a 28x28 conv model (digits upscaled and uploaded as an .npz); the peak resident memory (VmHWM)
of the worker that ran each job (fresh per job, and checked to be the pid that claimed the shards). First, a
breakdown of the bare loop's time per stage at batch 4096; last, prototypes of the fixes suggested in
bench/README.md. Each row says how many cores other processes kept busy meanwhile ("other load": on a
shared 2-vCPU machine, wall-clock figures taken at 1 or more are not comparable) and the CPU seconds of the
processes doing the work (the bare loop's own, the service's workers'): samples per CPU second compares the
work itself, much less disturbed by other load. `--quick` shrinks every size 10x. Prints only; asserts
nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
import torch

from synthjobs.rules.sharding import plan_shards, split_total

# glibc malloc settings of the prototype fix: keep freed blocks of up to 32 MiB (glibc's cap) in the heap
# instead of unmapping them, so per-batch tensors are not page-faulted in again on every batch.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
BATCH = 4096  # training.sample.generate's default: the batch the worker decodes in
SMALL_BATCH = 512  # the prototype's batch for 28x28: its per-batch tensors stay under glibc's mmap cap
BREAKDOWN_SAMPLES = 300_000  # timed after one warm-up shard
SECTIONS = ["digits", "two", "webdataset", "conv", "s3", "prototypes"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; the service gets SYNTHJOBS_DEVICE")
    p.add_argument("--threads", type=int, default=1, help="torch threads in every process (default 1)")
    p.add_argument("--total", type=int, default=10_000_000, help="digits samples of the main runs")
    p.add_argument("--small", type=int, default=1_000_000, help="samples of the webdataset and S3 runs")
    p.add_argument("--conv-total", type=int, help="samples of the 28x28 conv runs (default: --small)")
    p.add_argument("--shard-size", type=int, default=100_000, help="the service's default shard size")
    p.add_argument("--size", type=int, default=28, help="image size of the conv model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--redis-url", help="broker (default: the embedded SQLite broker)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the S3 / local overlap runs")
    p.add_argument(
        "--warm",
        action="store_true",
        help="S3 / local runs on a warm worker (each timed job follows a one-shard job on the same worker), "
        "and the digits run once more so",
    )
    p.add_argument("--quick", action="store_true", help="every size 10x smaller: a smoke run")
    p.add_argument("--skip", nargs="*", default=[], choices=SECTIONS, help="sections not to run")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: run one bare loop
    return p.parse_args(argv)


# --- the bare loop (a child process) ---------------------------------------------------------------------


@torch.inference_mode()
def generate_inplace(
    model: Any, labels: torch.Tensor, generator: torch.Generator, temperature: float, device: str
) -> np.ndarray:
    """Prototype of `training.sample.generate` with the uint8 conversion done in place.

    The same ops in the same order as `model.sample` + `round(p * 255).to(uint8)`, so the bytes are the same:
    sigmoid, *255 and round run in place on the decoder's output, and each batch is copied straight into one
    preallocated uint8 array instead of a list of chunks joined by `torch.cat`.
    """
    c, h, w = model.image_shape
    out = torch.empty((len(labels), c * h * w), dtype=torch.uint8)  # (N, D), on the host
    for start in range(0, len(labels), BATCH):
        batch = labels[start : start + BATCH].to(device)
        z = torch.randn((len(batch), model.latent_dim), generator=generator, device=generator.device)
        p = model.decode(z.to(device) * temperature, batch).sigmoid_()  # (B, D) probabilities
        out[start : start + len(batch)].copy_(p.mul_(255).round_())
    images = out.reshape(-1, c, h, w).numpy()
    return images[:, 0] if c == 1 else np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _shard(
    loaded: Any, spec: dict[str, Any], index: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Shard `index` as the spec's mode makes it: the worker's `generate_shard`, or a prototype."""
    from training.sample import generate, shard_generator
    from worker.pipelines.sample import generate_shard

    counts = spec["plan"][index]
    if spec["mode"] == "loop":
        # `shuffle` as the service's jobs have it (the API's default): the same labels, so the same bytes.
        params = {"seed": spec["seed"], "temperature": 1.0, "shuffle": True}
        return generate_shard(loaded, params, index, counts, device)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    generator = shard_generator(spec["seed"], index)
    if spec["mode"] == "inplace":
        images = generate_inplace(loaded.model, labels, generator, 1.0, spec["device"])
    elif spec["mode"] == "recipe-1":  # the decoder batch before GENERATION_RECIPE 2: 4096 whatever the size
        images = generate(loaded.model, labels, generator=generator, device=device, batch_size=BATCH)
    else:  # "small-batch"
        images = generate(loaded.model, labels, generator=generator, device=device, batch_size=SMALL_BATCH)
    return images, labels.numpy()


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate and write the spec's shards; seconds of the shard loop, sha256 of each file."""
    from training.checkpoint import load_checkpoint
    from worker.formats import EXTENSIONS, write_shard

    device = torch.device(spec["device"])
    loaded = load_checkpoint(Path(spec["checkpoint"]).read_bytes(), device=device)
    out, fmt = Path(spec["out_dir"]), spec["format"]
    out.mkdir(parents=True, exist_ok=True)
    _barrier(spec)
    faults, load, started = _faults(), common.OtherLoad(common.own_cpu_seconds), time.monotonic()
    cpu = common.own_cpu_seconds()
    samples = 0
    for index in spec["shards"]:
        images, labels = _shard(loaded, spec, index, device)
        with open(out / f"shard-{index:05d}.{EXTENSIONS[fmt]}", "wb") as handle:
            write_shard(handle, fmt, images, labels, f"bare-{index:05d}")
        samples += len(labels)
    common.synchronize(spec["device"])
    ended = time.monotonic()
    return {
        "start": started,
        "end": ended,
        "seconds": ended - started,
        "samples": samples,
        "cpu": common.own_cpu_seconds() - cpu,
        "other_load": load.cores(),
        "faults": _faults() - faults,
        "peak_mib": common.peak_rss_mib(os.getpid()),
        "sha256": {i: _sha256(out / f"shard-{i:05d}.{EXTENSIONS[fmt]}") for i in spec["shards"]},
    }


def run_breakdown(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds and page faults of each stage of the bare loop, summed over the first shards of the plan."""
    from training.checkpoint import load_checkpoint
    from training.sample import shard_generator
    from worker.formats import write_npz

    device = spec["device"]
    model = load_checkpoint(Path(spec["checkpoint"]).read_bytes(), device=device).model
    c, h, w = model.image_shape
    stages = [
        "latents (randn)",
        "decoder (model.decode)",
        "sigmoid",
        "round(p*255).to(uint8)",
        "torch.cat + reshape",
        "npz write (to a file)",
    ]
    seconds, faults = dict.fromkeys(stages, 0.0), dict.fromkeys(stages, 0)

    def stage(name: str, fn: Any) -> Any:
        common.synchronize(device)
        f0, t0 = _faults(), time.perf_counter()
        result = fn()
        common.synchronize(device)
        seconds[name] += time.perf_counter() - t0
        faults[name] += _faults() - f0
        return result

    def one_shard(index: int) -> int:
        counts = spec["plan"][index]
        labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
        generator, chunks = shard_generator(spec["seed"], index), []
        for start in range(0, len(labels), BATCH):
            batch = labels[start : start + BATCH].to(device)
            shape, g = (len(batch), model.latent_dim), generator
            z = stage(stages[0], lambda shape=shape, g=g: torch.randn(shape, generator=g))
            logits = stage(stages[1], lambda z=z, b=batch: model.decode(z.to(device), b))
            p = stage(stages[2], lambda x=logits: torch.sigmoid(x))
            chunks.append(stage(stages[3], lambda p=p: torch.round(p * 255).to(torch.uint8).cpu()))
        images = stage(stages[4], lambda ch=chunks: torch.cat(ch).reshape(-1, c, h, w).numpy()[:, 0])
        stage(stages[5], lambda i=images, lab=labels: _write_file(spec, write_npz, i, lab.numpy()))
        return len(labels)

    with torch.inference_mode():
        one_shard(spec["shards"][0])  # warm-up: lazy initialisation, the allocator's first growth
        for counter in (seconds, faults):
            counter.update(dict.fromkeys(stages, 0))
        load = common.OtherLoad(common.own_cpu_seconds)
        samples = sum(one_shard(index) for index in spec["shards"])
        other_load = load.cores()
        conversions = conversion_variants(model, device)
    return {
        "samples": samples,
        "seconds": seconds,
        "faults": faults,
        "conversions": conversions,
        "other_load": other_load,
    }


def conversion_variants(model: Any, device: str, repeats: int = 100) -> dict[str, Any]:
    """Seconds per 100k images of ways to turn one batch of decoder logits into uint8, on their own.

    Every variant must give the same bytes as `generate` (checked): sigmoid, *255 and round are the same ops,
    only done in place or written straight into a preallocated array.
    """
    labels = torch.arange(BATCH, device=device) % model.num_classes
    z = torch.randn((BATCH, model.latent_dim), generator=torch.Generator().manual_seed(0)).to(device)
    logits = model.decode(z, labels)
    out = torch.empty((BATCH, logits.shape[1]), dtype=torch.uint8)

    def current() -> torch.Tensor:
        return torch.round(torch.sigmoid(logits) * 255).to(torch.uint8).cpu()

    def in_place() -> torch.Tensor:
        return torch.sigmoid(logits).mul_(255).round_().to(torch.uint8).cpu()

    def into_buffer() -> torch.Tensor:
        return out.copy_(torch.sigmoid(logits).mul_(255).round_())

    variants = {
        "round(sigmoid(l)*255).to(uint8) (now)": current,
        "sigmoid(l).mul_(255).round_().to(uint8)": in_place,
        "... copy_ into a preallocated uint8 array": into_buffer,
    }
    reference, result = current(), {}
    for name, fn in variants.items():
        same = torch.equal(fn().cpu(), reference)
        common.synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        common.synchronize(device)
        result[name] = {"seconds": (time.perf_counter() - started) / repeats * 1e5 / BATCH, "same": same}
    return result


def _write_file(spec: dict[str, Any], write: Any, images: np.ndarray, labels: np.ndarray) -> None:
    path = Path(spec["out_dir"]) / "breakdown.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        write(handle, images, labels)


def _barrier(spec: dict[str, Any]) -> None:
    """With a go-file in the spec: say ready, then wait for the parent's go (parallel runs start together)."""
    if not spec.get("go_file"):
        return
    Path(spec["ready_file"]).touch()
    while not Path(spec["go_file"]).exists():
        time.sleep(0.005)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def child_main(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    common.limit_threads(spec["threads"])
    result = run_breakdown(spec) if spec["mode"] == "breakdown" else run_bare(spec)
    print(json.dumps(result))


# --- the parent: children, jobs, tables -----------------------------------------------------------------


@dataclass
class Run:
    """One row of the throughput table."""

    name: str
    samples: int
    seconds: float
    peak_mib: list[float] = field(default_factory=list)
    other_load: float = float("nan")
    cpu: float = float("nan")  # CPU seconds of the process(es) doing the work (the workers, for the service)
    note: str = ""
    sha256: dict[str, str] = field(default_factory=dict)  # a bare loop's shards, by index
    shard_seconds: float = float("nan")  # a service job's time to its last shard (before the finalizer)

    @property
    def shard_rate(self) -> float:
        return self.samples / self.shard_seconds

    @property
    def rate(self) -> float:
        return self.samples / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Samples per CPU second: what the work costs, much less disturbed by other load than wall time."""
        return self.samples / self.cpu


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    small_local: Run | None = None  # the service's `--small` digits npz run into the local folder

    def add(self, run: Run) -> Run:
        self.runs.append(run)
        peak = "/".join(f"{p:.0f}" for p in run.peak_mib) or "-"
        print(
            f"  {run.name}: {run.samples:,} in {run.seconds:.2f} s = {run.rate:,.0f}/s, peak RSS {peak} MiB, "
            f"other load {run.other_load:.2f} cores {run.note}",
            flush=True,
        )
        return run

    def spec(
        self,
        checkpoint: Path,
        plan: list[list[int]],
        mode: str = "loop",
        fmt: str = "npz",
        shards: Any = None,
    ) -> dict[str, Any]:
        """What a bare-loop child does: `mode` loop (the worker's code), inplace, small-batch or breakdown."""
        return {
            "checkpoint": str(checkpoint),
            "plan": plan,
            "mode": mode,
            "format": fmt,
            "out_dir": tempfile.mkdtemp(prefix="bare-", dir=self.root),
            "shards": list(range(len(plan))) if shards is None else shards,
            "device": self.args.device,
            "threads": self.args.threads,
            "seed": self.args.seed,
        }


def start_child(spec: dict[str, Any], extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    path = Path(spec["out_dir"]).with_suffix(".json")
    path.write_text(json.dumps(spec))
    env = {**os.environ, **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, __file__, "--child", str(path)], env=env, stdout=subprocess.PIPE, text=True
    )


def finish_child(child: subprocess.Popen[str], spec: dict[str, Any]) -> dict[str, Any]:
    output, _ = child.communicate()
    shutil.rmtree(spec["out_dir"], ignore_errors=True)
    if child.returncode != 0:
        raise RuntimeError(f"bare loop child failed ({child.returncode})")
    return dict(json.loads(output.strip().splitlines()[-1]))


def run_child(spec: dict[str, Any], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    return finish_child(start_child(spec, extra_env), spec)


def run_parallel(specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Run bare loops in parallel processes that start their shard loops together; results, other load."""
    go = Path(specs[0]["out_dir"]).with_suffix(".go")
    for i, spec in enumerate(specs):
        spec.update(go_file=str(go), ready_file=f"{spec['out_dir']}.ready{i}")
    children = [start_child(spec) for spec in specs]
    while not all(Path(s["ready_file"]).exists() for s in specs):
        if any(c.poll() is not None for c in children):
            raise RuntimeError("a bare loop child exited before it was ready")
        time.sleep(0.01)
    busy, started = common.busy_cpu_seconds(), time.monotonic()
    go.touch()
    results = [finish_child(c, s) for c, s in zip(children, specs, strict=True)]
    other = common.busy_cpu_seconds() - busy - sum(r["cpu"] for r in results)
    return results, max(0.0, other / (time.monotonic() - started))


def versus(run: Run, base: Run) -> str:
    """`run`'s throughput as a multiple of `base`'s, by wall time and by CPU time."""
    return f"{run.rate / base.rate:.2f}x ({run.cpu_rate / base.cpu_rate:.2f}x by CPU)"


def bare_run(bench: Bench, name: str, spec: dict[str, Any], extra_env: dict[str, str] | None = None) -> Run:
    result = run_child(spec, extra_env)
    shards = max(1, len(spec["shards"]))
    note = (
        f"[{1e3 * result['seconds'] / shards:.1f} ms/shard, {result['faults'] / shards:,.0f} page "
        f"faults/shard, CPU {result['cpu']:.1f} s]"
    )
    run = Run(
        name, result["samples"], result["seconds"], [result["peak_mib"]], result["other_load"], result["cpu"]
    )
    run.note, run.sha256 = note, result["sha256"]
    return bench.add(run)


def database_url(stack: common.Stack) -> str:
    return stack.env.get("SYNTHJOBS_DATABASE_URL") or f"sqlite:///{(stack.home / 'synthjobs.db').resolve()}"


def shard_rows(stack: common.Stack, job_id: str) -> list[tuple[str, float]]:
    """(worker, seconds inside run_shard) of each shard of the job, read from the ledger."""
    from sqlalchemy import select

    from synthjobs.ledger.db import session_scope
    from synthjobs.ledger.tables import JobShard

    with session_scope(database_url(stack)) as session:
        rows = session.execute(select(JobShard.worker, JobShard.seconds).where(JobShard.job_id == job_id))
        return [(str(worker), float(seconds or 0.0)) for worker, seconds in rows]


def service_run(
    bench: Bench,
    stack: common.Stack,
    name: str,
    body: dict[str, Any],
    workers: int = 1,
    worker_env: dict[str, str] | None = None,
    bare: Run | None = None,
    keep: bool = False,
    warm: dict[str, Any] | None = None,
) -> Any:
    """A sampling job on `workers` freshly started workers; peak memory of each, read before they stop.

    With `warm`, that job runs first on the same workers, untimed: the timed job then finds them warm (its
    imports, storage client and model loaded), as a long-lived worker is.
    Returns the run, or with `keep` (run, job) and the job's outputs are left for the caller to drop."""
    env = {"SYNTHJOBS_WORKER_PROCESSES": str(workers), **(worker_env or {})}
    pids = [common.start_worker(stack, env) for _ in range(workers)]
    if warm is not None:
        drop_outputs(stack, common.wait_job(stack, stack.client.submit_sample(warm)["id"]))
    ours = [*pids, stack.api.pid]
    cpu_before = {pid: common.cpu_seconds(pid) for pid in pids}
    load = common.OtherLoad(lambda: sum(common.cpu_seconds(p) for p in ours) + common.own_cpu_seconds())
    own = common.own_cpu_seconds()
    job = common.wait_job(stack, stack.client.submit_sample(body)["id"])
    own = common.own_cpu_seconds() - own  # this process: polling, and moto's server when the stack is on S3
    other_load = load.cores()
    peaks = [common.peak_rss_mib(pid) for pid in pids]
    cpu = sum(common.cpu_seconds(pid) - cpu_before[pid] for pid in pids)
    children = [c for pid in pids for c in common.child_pids(pid)]
    rows = shard_rows(stack, job["id"])
    stack.stop_workers()
    claimed = {int(w.rsplit(":", 1)[1]) for w, _ in rows} | common.claimed_pids(stack, job["id"])
    if not claimed <= set(pids) or children:
        raise RuntimeError(f"shards claimed by {claimed}, workers {pids} (children {children})")
    seconds = common.job_seconds(job)
    events = {e["kind"]: common.parse_time(e["at"]) for e in stack.client.events(job["id"])}
    finalize = (common.parse_time(job["finished_at"]) - events["finalizing"]).total_seconds()
    in_shards = sum(s for _, s in rows)
    per_worker = [sum(1 for w, _ in rows if w.endswith(f":{pid}")) for pid in pids]
    outside = (seconds - finalize) * workers - in_shards  # worker-seconds outside run_shard
    queued = (common.parse_time(job["started_at"]) - common.parse_time(job["created_at"])).total_seconds()
    note = (
        f"[{len(rows)} shards, per worker {per_worker}, all claimed by the started workers' pids; per shard "
        f"{1e3 * in_shards / len(rows):.1f} ms in run_shard + {1e3 * outside / len(rows):.1f} ms outside it; "
        f"finalizer {finalize:.2f} s; worker CPU {cpu:.1f} s; this process's CPU {own:.2f} s (polling, and "
        f"moto's server on S3); queued before the first claim {queued:.1f} s"
    )
    if bare is not None and body.get("format", "npz") == "npz":
        same = [bare.sha256.get(str(s["index"])) == s["sha256"] for s in job["shards"]]
        note += f"; shards byte-identical to the bare loop's: {sum(same)}/{len(same)}"
    run = bench.add(Run(name, int(job["result"]["total"]), seconds, peaks, other_load, cpu, note + "]"))
    run.shard_seconds = seconds - finalize
    if keep:
        return run, job
    drop_outputs(stack, job)
    return run


def drop_outputs(stack: common.Stack, job: dict[str, Any]) -> None:
    """Remove a local job's shards (a 10M job is 700 MB); S3's are moto's memory, gone with the server."""
    if job["result"]["output_uris"][0].startswith("file://"):
        shutil.rmtree(stack.stored_path(job["result"]["output_uris"][0]).parent, ignore_errors=True)


def train_model(stack: common.Stack, dataset: Any, epochs: int, architecture: str = "auto") -> dict[str, Any]:
    common.start_worker(stack)
    body = {"dataset": dataset, "hyperparameters": {"epochs": epochs, "architecture": architecture}}
    job = common.wait_job(stack, stack.client.submit_train(body)["id"])
    stack.stop_workers()
    return stack.client.model(job["result"]["model_id"])


def breakdown(bench: Bench, checkpoint: Path, plan: list[list[int]]) -> None:
    """Time each stage of the bare loop, with glibc's default malloc settings and with tuned ones."""
    wanted = math.ceil(BREAKDOWN_SAMPLES / max(1, sum(plan[0])))
    shards = list(range(min(wanted, len(plan))))
    results = {}
    for label, env in (("default malloc", None), ("malloc tuned", MALLOC_ENV)):
        results[label] = run_child(bench.spec(checkpoint, plan, "breakdown", shards=shards), env)
    samples = results["default malloc"]["samples"]
    rows = []
    for stage in [*results["default malloc"]["seconds"], "total"]:
        row: list[Any] = [stage]
        for result in results.values():
            total = sum(result["seconds"].values())
            secs = result["seconds"].get(stage, total)
            faults = result["faults"].get(stage, sum(result["faults"].values()))
            row += [1e3 * secs * 1e5 / samples, f"{100 * secs / total:.0f} %", round(faults * 1e5 / samples)]
        rows.append(row)
    loads = ", ".join(f"{label} {r['other_load']:.2f}" for label, r in results.items())
    title = (
        f"Bare loop, digits, time per stage ({samples:,} samples after a warm-up shard, batch {BATCH}; "
        f"other load, cores: {loads}):"
    )
    columns = [f"{h}, {label}" for label in results for h in ("ms/100k", "share", "faults/100k")]
    common.print_table(["stage", *columns], rows, title)
    conversions = results["default malloc"]["conversions"]
    rows = [[name, 1e3 * v["seconds"], v["same"]] for name, v in conversions.items()]
    common.print_table(["uint8 conversion of one batch of logits, alone", "ms/100k", "same bytes"], rows)


def webdataset_costs(repeats: int = 2000) -> str:
    """Per image: the PNG encoding, and the whole webdataset writer (PNG + two tar members)."""
    import io

    from training.sample import encode_png
    from worker.formats import write_webdataset

    images = np.random.default_rng(0).integers(0, 256, (repeats, 8, 8), dtype=np.uint8)
    started = time.perf_counter()
    for image in images:
        encode_png(image)
    png = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    write_webdataset(io.BytesIO(), images, np.zeros(repeats, np.int64), "x")
    whole = (time.perf_counter() - started) / repeats
    return f"per 8x8 image: PNG encoding {1e6 * png:.0f} us, tar members {1e6 * (whole - png):.0f} us"


def digits_runs(bench: Bench, stack: common.Stack, model: dict[str, Any]) -> None:
    args, checkpoint = bench.args, stack.stored_path(model["checkpoint_uri"])
    plan = plan_shards(split_total(args.total, [1.0] * 10), args.shard_size)
    body = {"model": model["id"], "total": args.total, "seed": args.seed, "shard_size": args.shard_size}
    print(f"\ndigits, {args.total:,} samples in {len(plan)} npz shards of {args.shard_size:,}:")
    breakdown(bench, checkpoint, plan)
    before = bare_run(bench, "bare loop, digits", bench.spec(checkpoint, plan))
    one = service_run(bench, stack, "service, digits, 1 worker", body, bare=before)
    warm = None
    if args.warm:  # the same job on a worker that already ran one shard of another seed
        first = {**body, "total": args.shard_size, "seed": args.seed + 1}
        warm = service_run(bench, stack, "service, digits, 1 warm worker", body, bare=before, warm=first)
    after = bare_run(bench, "bare loop, digits, after the service", bench.spec(checkpoint, plan))
    bare_rate = (before.rate + after.rate) / 2
    bare_cpu_rate = (before.cpu_rate + after.cpu_rate) / 2
    for label, run in (("1 worker", one), ("1 warm worker", warm)):
        if run is None:
            continue
        bench.notes.append(
            f"digits, {label}: service / bare loop = {run.rate / bare_rate:.3f} by wall time (target >= "
            f"0.9), {run.cpu_rate / bare_cpu_rate:.3f} by CPU time (samples per CPU second)"
        )
    if "two" not in args.skip:
        halves = [list(range(len(plan)))[i::2] for i in range(2)]
        results, other = run_parallel([bench.spec(checkpoint, plan, shards=h) for h in halves])
        seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
        peaks = [r["peak_mib"] for r in results]
        cpu = sum(r["cpu"] for r in results)
        name = "bare loop, digits, 2 processes in parallel"
        two_bare = bench.add(Run(name, args.total, seconds, peaks, other, cpu))
        two = service_run(bench, stack, "service, digits, 2 workers", body, workers=2)
        bench.notes.append(
            f"2 workers: {two.rate / one.rate:.2f}x one worker; the bare loop in 2 parallel processes: "
            f"{two_bare.rate / bare_rate:.2f}x one process (what this machine's cores allow)"
        )
    small = service_run(bench, stack, "service, digits, 1 worker, --small", {**body, "total": args.small})
    bench.small_local = small
    bench.notes.append(
        f"worker peak RSS (VmHWM, fresh worker each): {small.peak_mib[0]:.0f} MiB for {args.small:,} "
        f"samples, {one.peak_mib[0]:.0f} MiB for {args.total:,}"
    )
    if "prototypes" not in args.skip:
        prototypes(bench, stack, checkpoint, plan, body, before, one)


def webdataset_runs(bench: Bench, stack: common.Stack, model: dict[str, Any]) -> None:
    args, checkpoint = bench.args, stack.stored_path(model["checkpoint_uri"])
    plan = plan_shards(split_total(args.small, [1.0] * 10), args.shard_size)
    body = {"model": model["id"], "total": args.small, "seed": args.seed, "shard_size": args.shard_size}
    print(f"\nwebdataset, digits, {args.small:,} samples ({webdataset_costs()}):")
    bare = bare_run(bench, "bare loop, digits, webdataset", bench.spec(checkpoint, plan, fmt="webdataset"))
    body["format"] = "webdataset"
    service = service_run(bench, stack, "service, digits, webdataset, 1 worker", body)
    ratio, cpu_ratio = service.rate / bare.rate, service.cpu_rate / bare.cpu_rate
    npz = f"; {bench.small_local.rate / service.rate:.1f}x slower than npz" if bench.small_local else ""
    bench.notes.append(f"webdataset: service / bare loop = {ratio:.3f} (by CPU {cpu_ratio:.3f}){npz}")


def prototypes(
    bench: Bench,
    stack: common.Stack,
    checkpoint: Path,
    plan: list[list[int]],
    body: dict[str, Any],
    bare: Run,
    service: Run,
) -> None:
    print("\nprototypes of the suggested fixes, digits (same request):")
    inplace = bare_run(bench, "bare loop, in-place uint8 conversion", bench.spec(checkpoint, plan, "inplace"))
    same = inplace.sha256 == bare.sha256
    tuned = bare_run(bench, "bare loop, malloc tuned", bench.spec(checkpoint, plan), MALLOC_ENV)
    both = bare_run(
        bench, "bare loop, in-place + malloc tuned", bench.spec(checkpoint, plan, "inplace"), MALLOC_ENV
    )
    tuned_service = service_run(
        bench, stack, "service, digits, 1 worker, malloc tuned", body, worker_env=MALLOC_ENV
    )
    bench.notes.append(
        f"prototypes, against the first bare loop: in-place conversion {versus(inplace, bare)} (same bytes: "
        f"{same}), malloc tuned {versus(tuned, bare)}, both {versus(both, bare)}; the service with malloc "
        f"tuned: {versus(tuned_service, service)} the service"
    )


def conv_runs(bench: Bench, stack: common.Stack, total: int) -> None:
    args = bench.args
    images, labels = common.digits_upscaled(args.size)
    dataset_id = common.upload_npz(stack, images, labels)
    model = train_model(stack, {"kind": "uploaded", "id": dataset_id}, epochs=2, architecture="conv")
    plan = plan_shards(split_total(total, [1.0] * 10), args.shard_size)
    checkpoint = stack.stored_path(model["checkpoint_uri"])
    body = {"model": model["id"], "total": total, "seed": args.seed, "shard_size": args.shard_size}
    what = f"{args.size}x{args.size} conv"
    print(f"\n{what} model, {total:,} samples:")
    before = bare_run(bench, f"bare loop, {what}", bench.spec(checkpoint, plan))
    service = service_run(bench, stack, f"service, {what}, 1 worker", body, bare=before)
    ratio = f"{service.rate / before.rate:.3f} (by CPU {service.cpu_rate / before.cpu_rate:.3f})"
    if "prototypes" in args.skip:
        bench.notes.append(f"{what}: service / bare loop = {ratio}")
        return
    from training.sample import GENERATION_RECIPE, decoder_batch

    batch = decoder_batch((1, args.size, args.size))
    old = bare_run(
        bench, f"bare loop, {what}, recipe 1 (batch {BATCH})", bench.spec(checkpoint, plan, "recipe-1")
    )
    same = old.sha256 == before.sha256
    bench.notes.append(
        f"{what}: service / bare loop = {ratio}; the bare loop at recipe {GENERATION_RECIPE} (batch {batch}) "
        f"is {before.rate / old.rate:.2f}x (by CPU {before.cpu_rate / old.cpu_rate:.2f}x) the bare loop at "
        f"recipe 1 (batch {BATCH}); peak RSS {before.peak_mib[0]:.0f} vs {old.peak_mib[0]:.0f} MiB "
        f"(same bytes on this machine: {same})"
    )


@contextmanager
def stack_settings(stack: common.Stack) -> Iterator[Any]:
    """The stack's Settings, read from its environment as a worker reads them."""
    from synthjobs.settings import Settings

    saved = dict(os.environ)
    os.environ.update(stack.env)
    try:
        yield Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def finalizer_check(stack: common.Stack, job: dict[str, Any]) -> tuple[float, float]:
    """Seconds of the finalizer's shard check now (one listing) and before (every shard read back, hashed)."""
    from synthjobs.storage import open_storage
    from worker.pipelines.sample import check_shards_stored

    with stack_settings(stack) as settings:
        storage = open_storage(settings)
    rows = [{"index": s["index"], "key": s["key"], "bytes": s["bytes"]} for s in job["shards"]]
    started = time.perf_counter()
    check_shards_stored(storage, job["id"], rows)
    listing = time.perf_counter() - started
    started = time.perf_counter()
    for row, shard in zip(rows, job["shards"], strict=True):
        if storage.size_and_sha256(row["key"]) != (row["bytes"], shard["sha256"]):
            raise RuntimeError(f"shard {row['index']} differs from its record")
    return listing, time.perf_counter() - started


def s3_runs(bench: Bench, local: common.Stack, local_model: dict[str, Any]) -> None:
    """S3 (moto) next to the local folder, each with overlap off and on, interleaved over `--rounds`."""
    args = bench.args
    with common.s3_server("bench") as endpoint:
        options = {"device": args.device, "threads": args.threads, "broker_url": args.redis_url}
        home = bench.root / "s3"
        with common.running_stack(
            home, 0, storage_url="s3://bench/synthjobs", s3_endpoint=endpoint, **options
        ) as s3:
            s3_model = train_model(s3, "digits", epochs=10)
            print(f"\nS3 storage (moto's server, threads of this process) and local, {args.small:,} samples:")
            sides = {"local": (local, local_model), "S3": (s3, s3_model)}
            rates: dict[tuple[str, str], list[Run]] = {}
            checks: dict[str, list[tuple[float, float]]] = {}
            for round_ in range(args.rounds):
                order = ["0", "1"] if round_ % 2 == 0 else ["1", "0"]
                for overlap in order:
                    for name in ["local", "S3"] if round_ % 2 == 0 else ["S3", "local"]:
                        stack, model = sides[name]
                        body = {
                            "model": model["id"],
                            "total": args.small,
                            "seed": args.seed,
                            "shard_size": args.shard_size,
                        }
                        label = f"service, digits, {name}, overlap {'on' if overlap == '1' else 'off'}"
                        env = {"SYNTHJOBS_SAMPLE_OVERLAP": overlap}
                        warm = None
                        if args.warm:  # one shard of another seed first, on the same worker
                            warm = {**body, "total": args.shard_size, "seed": args.seed + 1}
                            label += ", warm worker"
                        run, job = service_run(
                            bench, stack, label, body, worker_env=env, keep=True, warm=warm
                        )
                        rates.setdefault((name, overlap), []).append(run)
                        checks.setdefault(name, []).append(finalizer_check(stack, job))
                        drop_outputs(stack, job)

    def mean_rate(name: str, overlap: str, cpu: bool = False, shards: bool = False) -> float:
        runs = rates[(name, overlap)]
        return sum(r.cpu_rate if cpu else r.shard_rate if shards else r.rate for r in runs) / len(runs)

    for overlap in ("0", "1"):
        on = "on" if overlap == "1" else "off"
        wall = mean_rate("S3", overlap) / mean_rate("local", overlap)
        phase = mean_rate("S3", overlap, shards=True) / mean_rate("local", overlap, shards=True)
        bench.notes.append(
            f"overlap {on}: S3 / local folder = {wall:.3f} by wall ({phase:.3f} to the last shard, before "
            f"the finalizer), {mean_rate('S3', overlap, True) / mean_rate('local', overlap, True):.3f} by "
            "worker CPU "
            f"(mean of {args.rounds} interleaved rounds; moto's server runs in this process: its CPU is not "
            "in the worker's)"
        )
    for name in ("local", "S3"):
        phase = mean_rate(name, "1", shards=True) / mean_rate(name, "0", shards=True)
        bench.notes.append(
            f"{name}: overlap on / off = {mean_rate(name, '1') / mean_rate(name, '0'):.3f} by wall "
            f"({phase:.3f} to the last shard), "
            f"{mean_rate(name, '1', True) / mean_rate(name, '0', True):.3f} by worker CPU"
        )
        listing = sum(c[0] for c in checks[name]) / len(checks[name])
        download = sum(c[1] for c in checks[name]) / len(checks[name])
        bench.notes.append(
            f"finalizer shard check, {name}, {args.small:,} samples: one listing {1e3 * listing:.1f} ms, "
            f"every shard read back and hashed (before) {1e3 * download:.1f} ms"
        )


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args.child)
        return
    args.conv_total = args.conv_total or args.small
    if args.quick:
        for name in ("total", "small", "conv_total", "shard_size"):
            setattr(args, name, getattr(args, name) // 10)
    common.limit_threads(args.threads)
    print(f"device: {common.describe_device(args.device)}; torch {torch.__version__}")
    print(f"broker: {args.redis_url or 'embedded default (kombu SQLAlchemy transport on SQLite)'}")
    print(
        f"sizes: total {args.total:,}, small {args.small:,}, conv {args.conv_total:,}, shard size "
        f"{args.shard_size:,}, decoder batch {BATCH}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sample-") as tmp:
        bench = Bench(args, Path(tmp))
        options = {"device": args.device, "threads": args.threads, "broker_url": args.redis_url}
        with common.running_stack(bench.root / "local", workers=0, **options) as stack:
            model = train_model(stack, "digits", epochs=10)
            if "digits" not in args.skip:
                digits_runs(bench, stack, model)
            if "webdataset" not in args.skip:
                webdataset_runs(bench, stack, model)
            if "conv" not in args.skip:
                conv_runs(bench, stack, args.conv_total)
            if "s3" not in args.skip:
                s3_runs(bench, stack, model)
    rows = [
        [
            r.name,
            r.samples,
            r.seconds,
            r.rate,
            r.cpu,
            r.cpu_rate,
            "/".join(f"{p:.0f}" for p in r.peak_mib),
            r.other_load,
        ]
        for r in bench.runs
    ]
    headers = [
        "run",
        "samples",
        "seconds",
        "samples/s",
        "CPU s",
        "samples/CPU s",
        "peak RSS MiB",
        "other load",
    ]
    common.print_table(headers, rows, "Throughput:")
    for note in bench.notes:
        print(f"- {note}")
    print(f"\nbench wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
