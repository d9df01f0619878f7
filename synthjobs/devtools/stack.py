"""A whole stack on this machine: one `synthjobs api` and its `synthjobs worker`s, for tests and benchmarks.

The integration tests, the fault scenarios and `bench/` all start the service this one way, so a change to
how the service is launched (a new variable, a readiness line) is made once. Processes are started through
`processes` exactly as an operator starts them; nothing here imports the API or the worker.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from synthjobs.devtools import processes
from synthjobs.storage.base import local_path_of
from synthjobs_client.client import Client

# moto's server accepts any credentials; boto3 only needs some to sign with.
S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
READY_LINE = "synthjobs worker ready"


def stack_env(
    home: Path,
    *,
    database_url: str | None = None,
    broker_url: str | None = None,
    storage_url: str | None = None,
    s3_endpoint: str | None = None,
    device: str | None = None,
    threads: int | None = None,
    queue_prefix: str = "gpu",
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every process of one stack: its own home, queue, admin token and URLs.

    Args:
        home: SYNTHJOBS_HOME; the embedded default's database, broker and storage live under it.
        database_url, broker_url, storage_url, s3_endpoint: services to use instead of the embedded ones.
        device: SYNTHJOBS_DEVICE, when given.
        threads: SYNTHJOBS_TORCH_THREADS and MKL_NUM_THREADS, when given (OMP_NUM_THREADS is always set:
            one thread unless told, because two measured 2-27x slower on 2-vCPU machines).
        queue_prefix: the queue is `<prefix>-<random>`, so stacks sharing a broker never share a queue.
        extra: any other variables, applied last.

    Returns:
        The parent's environment without its SYNTHJOBS_* variables, plus the stack's own.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHJOBS_")}
    env.update(S3_TEST_ENV)
    env.update(
        {
            "SYNTHJOBS_HOME": str(home),
            "SYNTHJOBS_QUEUE": f"{queue_prefix}-{uuid.uuid4().hex[:8]}",
            "SYNTHJOBS_ADMIN_TOKEN": f"admin-{uuid.uuid4().hex}",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(threads or 1),
        }
    )
    if threads is not None:
        env.update({"SYNTHJOBS_TORCH_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    if device is not None:
        env["SYNTHJOBS_DEVICE"] = device
    urls = {
        "SYNTHJOBS_DATABASE_URL": database_url,
        "SYNTHJOBS_BROKER_URL": broker_url,
        "SYNTHJOBS_STORAGE_URL": storage_url,
        "SYNTHJOBS_S3_ENDPOINT_URL": s3_endpoint,
    }
    env.update({k: v for k, v in urls.items() if v})
    env.update(extra or {})
    return env


@dataclass
class Stack:
    """A running API and its workers, sharing one database, broker and storage."""

    home: Path
    env: dict[str, str]
    api_url: str
    client: Client
    api: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # every worker, by log N

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def start_worker(
        self, extra_env: Mapping[str, str] | None = None, *, ready_timeout: float | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one worker (log `worker<N>.log`), with some variables changed if asked.

        With `ready_timeout`, wait until it logs that it consumes. `synthjobs worker` execs into
        `celery worker --pool solo`, so the returned process's pid is the one that runs tasks.
        """
        index = len(self.started)  # worker<N>.log keeps counting after stop_workers()
        worker = processes.start_worker({**self.env, **(extra_env or {})}, self.logs / f"worker{index}.log")
        self.workers.append(worker)
        self.started[index] = worker
        if ready_timeout is not None:
            self.wait_worker_ready(index, ready_timeout)
        return worker

    def wait_worker_ready(self, index: int, timeout: float = 60) -> None:
        """Block until worker `index` logged its ready line; RuntimeError if it exits or times out."""
        log = self.logs / f"worker{index}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists() and READY_LINE in log.read_text(errors="replace"):
                return
            worker = self.started.get(index)
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"worker{index} exited with {worker.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"worker{index} not ready after {timeout}s:\n{self.log_tail()}")

    def stop_workers(self) -> None:
        """Warm-stop every worker (SIGTERM, then SIGKILL if it lingers)."""
        for worker in self.workers:
            processes.stop(worker)
        self.workers.clear()

    def close(self) -> None:
        """Stop the workers, then the API; close the client."""
        self.stop_workers()
        processes.stop(self.api)
        self.client.close()

    def stored_path(self, key_or_uri: str) -> Path:
        """The file of a local-storage object, named by its key (as the API names it) or a file:// URI."""
        if key_or_uri.startswith("file://"):
            return Path(key_or_uri.removeprefix("file://"))
        url = self.env.get("SYNTHJOBS_STORAGE_URL")
        root = local_path_of(url) if url else (self.home / "storage").resolve()
        return root / key_or_uri

    def log_tail(self, lines: int = 60, *, skip_polling: bool = False) -> str:
        """The end of every process log, for assertion messages (without the API's GET lines if asked)."""
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()
            if skip_polling:
                text = [line for line in text if "GET /v1/" not in line]
            parts.append(f"--- {log.name}\n" + "\n".join(text[-lines:]))
        return "\n".join(parts)


def start_stack(
    home: Path,
    *,
    workers: int = 1,
    api_timeout: float = 60,
    client_timeout: float = 30.0,
    worker_ready_timeout: float | None = None,
    **env_options: object,
) -> Stack:
    """Start an API and `workers` workers with `stack_env(home, **env_options)`; see `stack_env`.

    Returns once the API answers /healthz (and, with `worker_ready_timeout`, every worker is ready).
    On failure everything started is stopped and RuntimeError carries the logs.
    """
    (home / "logs").mkdir(parents=True, exist_ok=True)
    env = stack_env(home, **env_options)  # type: ignore[arg-type]
    port = processes.free_port()
    api_url = f"http://127.0.0.1:{port}"
    api = processes.start_api(env, port, home / "logs" / "api.log")
    client = Client(api_url, token=env["SYNTHJOBS_ADMIN_TOKEN"], timeout=client_timeout)
    stack = Stack(home=home, env=env, api_url=api_url, client=client, api=api)
    try:
        try:
            processes.wait_for_api(api_url, api, timeout=api_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{stack.log_tail()}") from exc
        for _ in range(workers):
            stack.start_worker(ready_timeout=worker_ready_timeout)
    except BaseException:
        stack.close()
        raise
    return stack


@contextmanager
def running_stack(home: Path, **options: object) -> Iterator[Stack]:
    """`start_stack` as a context manager that always stops what it started."""
    stack = start_stack(home, **options)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.close()
