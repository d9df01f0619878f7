"""Shared helpers of the throughput benchmarks: a real stack in a temp dir, process memory, timing, tables.

A stack is what an operator runs: `synthjobs api` (uvicorn) and `synthjobs worker` (Celery, solo pool)
processes started by `synthjobs.devtools.stack` (the tests' harness too), on the embedded default (SQLite
jobs, kombu's SQLAlchemy transport on SQLite as the broker, a local folder as storage) unless URLs are given.
Every process gets one torch/OpenMP thread by default: two threads measured 2-27x slower than one on
2-vCPU machines.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from synthjobs.devtools import stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support
from tests.support import services  # noqa: E402 - after the path it is found on


def limit_threads(threads: int = 1) -> None:
    """One intra-op thread in this process (and in any child that inherits the environment)."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)


# The one stack harness (the tests' too): `synthjobs api` and `synthjobs worker` processes in a home folder.
Stack = stack.Stack
stack_env = partial(stack.stack_env, queue_prefix="bench", device="cpu", threads=1)


def forget_redis_queue(url: str, queue: str) -> None:
    """Delete what kombu left in Redis for this stack's own queue (its bindings), and nothing else."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"*{queue}*"))
    if keys:
        client.delete(*keys)
    client.close()


def start_worker(stack: Stack, extra_env: dict[str, str] | None = None, timeout: float = 120) -> int:
    """Start one worker and wait until it is ready; return its pid (the one that runs tasks, solo pool)."""
    return stack.start_worker(extra_env, ready_timeout=timeout).pid


@contextmanager
def running_stack(
    home: Path, workers: int = 1, *, device: str = "cpu", threads: int = 1, **env_options: Any
) -> Iterator[Stack]:
    """A stack with `stack_env(home, device=, threads=, **env_options)`, its workers ready; stopped after.

    On a Redis broker, what kombu left for the stack's queue is deleted afterwards.
    """
    options = {"api_timeout": 90, "client_timeout": 120, "worker_ready_timeout": 120}
    with stack.running_stack(
        home, workers=workers, device=device, threads=threads, queue_prefix="bench", **options, **env_options
    ) as running:
        try:
            yield running
        finally:
            broker = running.env.get("SYNTHJOBS_BROKER_URL", "")
            if broker.startswith(("redis://", "rediss://")):
                forget_redis_queue(broker, running.env["SYNTHJOBS_QUEUE"])


@contextmanager
def s3_server(bucket: str = "bench") -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (threads of this process) with `bucket` created; yields its URL."""
    with services.moto_server(bucket) as url:
        yield url


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for error messages."""
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- jobs -----------------------------------------------------------------------------------------------


def wait_job(stack: Stack, job_id: str, timeout: float = 3600, queued_timeout: float = 120) -> dict[str, Any]:
    """Wait for a job to succeed; RuntimeError with the logs if it fails, stays QUEUED or runs too long."""
    submitted = time.monotonic()

    def check(job: dict[str, Any]) -> None:
        if job["state"] == "QUEUED" and time.monotonic() - submitted > queued_timeout:
            raise RuntimeError(f"still QUEUED after {queued_timeout:.0f}s: no worker could claim it")

    try:
        return stack.client.wait(job_id, timeout=timeout, on_progress=check, poll=0.2, max_poll=1.0)
    except Exception as exc:
        logs = "\n".join(f"--- {p.name}\n{tail(p)}" for p in sorted(stack.logs.glob("*.log")))
        raise RuntimeError(f"job {job_id} did not succeed: {exc}\n{logs}") from exc


def parse_time(value: str) -> datetime:
    """An API timestamp (ISO 8601) as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_seconds(job: dict[str, Any]) -> float:
    """The job's own wall time: finished_at - started_at (queueing before the first claim excluded)."""
    return (parse_time(job["finished_at"]) - parse_time(job["started_at"])).total_seconds()


def claimed_pids(stack: Stack, job_id: str) -> set[int]:
    """Pids named by the job's claim events (`host:pid` workers): the processes that ran its tasks."""
    pids = set()
    for event in stack.client.events(job_id):
        worker = (event.get("data") or {}).get("worker")
        if isinstance(worker, str) and ":" in worker:
            pids.add(int(worker.rsplit(":", 1)[1]))
    return pids


def upload_npz(stack: Stack, images: np.ndarray, labels: np.ndarray) -> str:
    """Upload a dataset with `POST /v1/datasets` (multipart field `file`); return its id."""
    buffer = io.BytesIO()
    np.savez(buffer, images=images, labels=labels)
    response = stack.client._http.post(
        "/v1/datasets", files={"file": ("data.npz", buffer.getvalue(), "application/octet-stream")}
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload refused: HTTP {response.status_code}: {response.text}")
    return str(response.json()["id"])


def digits_upscaled(size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits upscaled bilinearly to size x size: uint8 (N, size, size), int64 (N,)."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    up = F.interpolate(images, size=(size, size), mode="bilinear").clamp_(0.0, 1.0)[:, 0]  # (N, size, size)
    pixels = torch.round(up * 255).to(torch.uint8).numpy()
    return pixels, np.asarray(bunch.target, dtype=np.int64)


# --- processes ------------------------------------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field_name}")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    """Current resident memory (VmRSS) of a live process, in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds the machine has been busy since boot, steal (time the hypervisor took) included."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process, all threads (e.g. moto's S3 server), children excluded."""
    times = os.times()
    return times.user + times.system


class OtherLoad:
    """Cores kept busy by processes other than the measured ones, while a measurement runs.

    `own` returns the CPU seconds of everything the benchmark runs (workers, API, this process); what the
    machine was busy beyond that, per second of the window, is load from elsewhere (other users' jobs, the
    hypervisor's steal). On a 2-vCPU machine anything near 1 means the figure was taken on a shared core.
    """

    def __init__(self, own: Callable[[], float]) -> None:
        self.own = own
        self.started, self.busy, self.mine = time.monotonic(), busy_cpu_seconds(), own()

    def cores(self) -> float:
        elapsed = time.monotonic() - self.started
        other = (busy_cpu_seconds() - self.busy) - (self.own() - self.mine)
        return max(0.0, other / elapsed) if elapsed > 0 else float("nan")


def child_pids(pid: int) -> list[int]:
    """Direct children of a live process (all its threads' children)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children


# --- timing ---------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall-clock timings include it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """(seconds, result) of one call, GPU work included."""
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - started, result


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def describe_device(device: str) -> str:
    """The device in words, for the header of a table."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    cores = len(os.sched_getaffinity(0))
    return f"cpu ({cores} cores visible, {torch.get_num_threads()} torch thread(s))"


# --- output ---------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    """A table cell: thousands separators for big numbers, `digits` decimals for small ones."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    """Print rows as a Markdown table with aligned columns (pasteable into bench/README.md)."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(flush=True)
