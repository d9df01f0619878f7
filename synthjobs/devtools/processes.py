"""Start and stop the service's real processes (a uvicorn API, a Celery worker) for the demo and the tests.

Both are started through the `synthjobs` CLI in a fresh interpreter, exactly as an operator would start
them, so the demo and the integration tests exercise the production code paths.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(args: list[str], env: Mapping[str, str], log_path: Path | None) -> subprocess.Popen[bytes]:
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(
        [sys.executable, "-m", "synthjobs_client.cli", *args],
        env=dict(env),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_api(env: Mapping[str, str], port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Run `synthjobs api` on 127.0.0.1:`port` (it migrates the database first)."""
    return _spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, log_path)


def start_worker(
    env: Mapping[str, str], log_path: Path | None = None, name: str = "worker"
) -> subprocess.Popen[bytes]:
    """Run `synthjobs worker`: a real Celery worker consuming the job queue."""
    return _spawn(["worker", "--name", f"{name}-{os.getpid()}-{time.time_ns()}"], env, log_path)


def wait_for_api(base_url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    """Block until the API answers /healthz with 200; RuntimeError if it dies or times out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode} before it was ready")
        try:
            response = httpx.get(f"{base_url}/healthz", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"the API at {base_url} was not healthy after {timeout}s: {last}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    """SIGTERM the process's group (a warm shutdown for Celery), then SIGKILL if it lingers."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(10)
    return process.returncode


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process's group at once: a crash, as far as the rest of the system can tell."""
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)
        process.wait(10)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
