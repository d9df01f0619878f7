"""Fixtures for fault injection: a TCP proxy, a private redis-server, helpers, and the recovery report.

Every scenario runs real processes (uvicorn API, Celery workers, redis-server, PostgreSQL, moto's S3 server)
through the stack fixtures of `tests/conftest.py` (the one harness, `synthjobs.devtools.stack`), injects
one fault, and checks that the job still ends as an undisturbed run would.
Each appends a row to a session-wide report printed at the end of the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from synthjobs.devtools import processes

FAST_RECOVERY = {
    "SYNTHJOBS_LEASE_SECONDS": "2",
    "SYNTHJOBS_RECONCILE_INTERVAL": "0.5",
    "SYNTHJOBS_REQUEUE_AFTER": "2",
    "SYNTHJOBS_CHECKPOINT_MIN_INTERVAL": "0",
    "SYNTHJOBS_PROGRESS_INTERVAL": "0.1",
}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "faults: fault-injection scenarios on real processes (make faults)")


def _load_tcp_proxy() -> Any:
    """tcp_proxy.py next to this file (tests are imported with --import-mode=importlib, not as a package)."""
    name = "synthjobs_faults_tcp_proxy"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("tcp_proxy.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --- TCP proxy ------------------------------------------------------------------------------------------


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[[str, int], Any]]:
    """`tcp_proxy(host, port)` → a TcpProxy on 127.0.0.1:<free port> forwarding there; closed at teardown."""
    module = _load_tcp_proxy()
    made: list[Any] = []

    def make(host: str, port: int) -> Any:
        proxy = module.TcpProxy(host, port)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


# --- A private redis-server we may kill, restart and pause ----------------------------------------------


class RedisServer:
    """`redis-server` as a child process on a fixed port, without persistence: a restart loses everything."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)]
        with open(self.workdir / "redis.log", "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.paused = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
            try:
                if self.client().ping():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def kill(self) -> None:
        """SIGKILL: every message in it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.paused = False

    def restart(self) -> None:
        """Kill and start again on the same port, empty (no persistence)."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.paused:
            self.resume()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own on a free port (never the shared one)."""
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(processes.free_port(), workdir)
    server.start()
    yield server
    server.stop()


# --- The report -----------------------------------------------------------------------------------------

REPORT_KEY = pytest.StashKey[list["ScenarioRow"]]()
REPORT_COLUMNS = ("scenario", "submitted", "completed", "lost", "duplicated", "recover s", "result", "note")
REPORT_LEGEND = (
    "submitted: jobs submitted under the fault (undisturbed reference runs not counted); "
    "completed: ended as expected (SUCCEEDED, or FAILED where that is the point)",
    "lost: did not end as expected (another final state, or never finished); "
    "duplicated: extra model versions or finalizer runs",
    "recover s: from the fault's injection to the last such job's finished_at",
)


@dataclass
class ScenarioRow:
    """One scenario's line in the report."""

    name: str
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_seconds: float | None = None
    result: str = "?"
    note: str = ""
    expect: str = "SUCCEEDED"
    fault_at: datetime | None = None
    job_ids: list[str] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    stack: Any = None

    def track(self, job: dict[str, Any], model_name: str | None = None) -> dict[str, Any]:
        """Count a job submitted under the fault; returns it."""
        self.job_ids.append(job["id"])
        self.submitted += 1
        if model_name:
            self.model_names.append(model_name)
        return job

    def inject(self) -> None:
        """Mark the moment the fault is injected (recovery is measured from here)."""
        self.fault_at = datetime.now(UTC)

    def cells(self) -> tuple[str, ...]:
        recover = "-" if self.recover_seconds is None else f"{self.recover_seconds:.1f}"
        return (
            self.name,
            str(self.submitted),
            str(self.completed),
            str(self.lost),
            str(self.duplicated),
            recover,
            self.result,
            self.note,
        )


def tally(row: ScenarioRow) -> None:
    """Fill completed / lost / duplicated / recovery from the ledger as the stack sees it now."""
    if row.stack is None:
        return
    client, finished = row.stack.client, []
    row.completed = row.lost = row.duplicated = 0
    for job_id in row.job_ids:
        job = client.get(job_id)
        if job["state"] == row.expect:
            row.completed += 1
            if job["finished_at"]:
                finished.append(datetime.fromisoformat(job["finished_at"]))
        else:
            row.lost += 1
        if job["kind"] == "sample":
            finalized = [e for e in client.events(job_id) if e["kind"] == "finalizing"]
            row.duplicated += max(0, len(finalized) - 1)
    for name in row.model_names:
        row.duplicated += max(0, len(client.models(name=name)) - 1)
    if row.fault_at is not None and finished and row.completed == row.submitted:
        row.recover_seconds = max(0.0, (max(finished) - row.fault_at).total_seconds())


@pytest.fixture(scope="session")
def fault_report(request: pytest.FixtureRequest) -> list[ScenarioRow]:
    """The session's report rows, printed by pytest_terminal_summary."""
    return request.config.stash.setdefault(REPORT_KEY, [])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_OUTCOME] = report.outcome


_CALL_OUTCOME = pytest.StashKey[str]()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, fault_report: list[ScenarioRow], start_stack: Any
) -> Iterator[Callable[..., ScenarioRow]]:
    """`scenario(name, stack)` → this test's report row.

    It asks for `start_stack` only to be torn down before it: the row is tallied from the live API.
    """
    rows: list[ScenarioRow] = []

    def make(name: str, stack: Any, expect: str = "SUCCEEDED") -> ScenarioRow:
        row = ScenarioRow(name=name, stack=stack, expect=expect)
        rows.append(row)
        fault_report.append(row)
        return row

    yield make
    outcome = request.node.stash.get(_CALL_OUTCOME, "error")
    for row in rows:
        row.result = "pass" if outcome == "passed" else "FAIL"
        try:
            tally(row)
        except Exception as exc:  # noqa: BLE001 - the report must not hide the test's own failure
            row.result += f" (tally: {type(exc).__name__})"
        row.stack = None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(REPORT_KEY, [])
    if not rows:
        return
    table = [REPORT_COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(REPORT_COLUMNS))]
    terminalreporter.section("fault injection: recovery report")
    for index, line in enumerate(table):
        cells = [
            c.ljust(w) if i in (0, len(line) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        terminalreporter.write_line("  ".join(cells).rstrip())
        if index == 0:
            terminalreporter.write_line("  ".join("-" * w for w in widths))
    for line in REPORT_LEGEND:
        terminalreporter.write_line(line)


# --- Helpers shared by the scenario files ---------------------------------------------------------------


class FaultKit:
    """Waiting, submitting and comparing, for the scenario files (reached through the `kit` fixture)."""

    fast_recovery = FAST_RECOVERY

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path  # the stacks' homes (start_stack puts them here)

    @staticmethod
    def train_body(epochs: int, model_name: str, seed: int = 11, **extra: Any) -> dict[str, Any]:
        return {
            "dataset": "digits",
            "hyperparameters": {"epochs": epochs},
            "seed": seed,
            "model_name": model_name,
            **extra,
        }

    @staticmethod
    def wait_for(
        predicate: Callable[[], Any], stack: Any, timeout: float = 60, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = predicate()
            except Exception:  # noqa: BLE001 - the API may be briefly unreachable during a fault
                value = None
            if value:
                return value
            time.sleep(0.05)
        pytest.fail(f"timed out after {timeout}s waiting for {what}\n{FaultKit.tail(stack)}")

    @staticmethod
    def tail(stack: Any, lines: int = 40) -> str:
        """The end of every process log, without the API's lines for the test's own polling."""
        return str(stack.log_tail(lines, skip_polling=True))

    @staticmethod
    def epoch_of(job: dict[str, Any]) -> int:
        phase = job["phase"]
        return int(phase.split()[1].split("/")[0]) if phase.startswith("epoch ") else 0

    def terminal(self, stack: Any, job_id: str, timeout: float = 90) -> dict[str, Any]:
        """The job once it is SUCCEEDED, FAILED or CANCELLED (fails the test on timeout)."""
        job: dict[str, Any] = {}

        def finished() -> bool:
            job.update(stack.client.get(job_id))
            return job["state"] in TERMINAL

        self.wait_for(finished, stack, timeout, f"job {job_id} to finish (last: {job.get('state')})")
        return job

    def succeeded(self, stack: Any, job_id: str, timeout: float = 90) -> dict[str, Any]:
        job = self.terminal(stack, job_id, timeout)
        assert job["state"] == "SUCCEEDED", (
            f"job {job_id} ended {job['state']}: {job['error']}\n{FaultKit.tail(stack)}"
        )
        return job

    def train(self, stack: Any, epochs: int, model_name: str, seed: int = 11) -> dict[str, Any]:
        """Submit and wait for an undisturbed training job."""
        job = stack.client.submit_train(self.train_body(epochs, model_name, seed))
        return self.succeeded(stack, job["id"])

    def read_uri(self, uri: str, s3_client: Any = None) -> bytes:
        """An object the service stored: an s3:// URI (read straight from moto, not a proxy), or the key
        the API names a local object by (read from whichever stack's local storage holds it)."""
        if "://" not in uri:
            found = [p for p in self.tmp_path.glob(f"home*/storage/{uri}") if p.is_file()]
            assert len(found) == 1, f"{uri} in no stack's local storage (or in several): {found}"
            return found[0].read_bytes()
        assert s3_client is not None, f"need an S3 client to read {uri}"
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def weights(self, job: dict[str, Any], s3_client: Any = None) -> dict[str, Any]:
        from training.checkpoint import load_checkpoint

        payload = self.read_uri(job["result"]["checkpoint_uri"], s3_client)
        return dict(load_checkpoint(payload).model.state_dict())

    def assert_same_training(
        self, disturbed: dict[str, Any], reference: dict[str, Any], s3_client: Any = None
    ) -> None:
        """Held-out −ELBO and every weight of the disturbed run equal the undisturbed run's."""
        import torch

        a, b = disturbed["result"]["metrics"], reference["result"]["metrics"]
        assert a["heldout_neg_elbo"] == b["heldout_neg_elbo"], (
            "held-out -ELBO differs from the undisturbed run"
        )
        got, want = self.weights(disturbed, s3_client), self.weights(reference, s3_client)
        assert got.keys() == want.keys()
        differing = [k for k in want if not torch.equal(got[k], want[k])]
        assert not differing, f"weights differ from the undisturbed run: {differing}"

    def manifest(self, job: dict[str, Any], s3_client: Any = None) -> dict[str, Any]:
        return dict(json.loads(self.read_uri(job["result"]["manifest_uri"], s3_client)))

    def shard_digests(self, job: dict[str, Any], s3_client: Any = None) -> list[tuple[int, str]]:
        """(count, sha256) of every shard, from the manifest, each checked against the stored bytes."""
        import hashlib

        manifest = self.manifest(job, s3_client)
        digests = []
        for shard, uri in zip(manifest["shards"], job["result"]["output_uris"], strict=True):
            stored = hashlib.sha256(self.read_uri(uri, s3_client)).hexdigest()
            assert stored == shard["sha256"], f"{uri} in storage differs from the manifest"
            digests.append((shard["count"], shard["sha256"]))
        return digests

    @staticmethod
    def assert_nothing_open(stack: Any) -> None:
        """No job is left RUNNING or QUEUED."""
        for state in ("RUNNING", "QUEUED"):
            left = stack.client.list(state=state)["items"]
            assert not left, f"jobs left {state}: {[j['id'] for j in left]}\n{FaultKit.tail(stack)}"

    @staticmethod
    def assert_one_version(stack: Any, name: str) -> dict[str, Any]:
        models = stack.client.models(name=name)
        assert len(models) == 1, f"{name} has {len(models)} versions, want exactly one"
        return models[0]

    @staticmethod
    def kinds(stack: Any, job_id: str) -> list[str]:
        return [e["kind"] for e in stack.client.events(job_id)]

    @staticmethod
    def worker_ready(stack: Any, index: int, timeout: float = 60) -> None:
        """Wait until worker `index` logged that it consumes (and its reconciler runs)."""
        try:
            stack.wait_worker_ready(index, timeout)
        except RuntimeError as exc:
            pytest.fail(str(exc))

    @staticmethod
    def start_worker_with(stack: Any, **overrides: str) -> subprocess.Popen[bytes]:
        """A worker of `stack` with some variables changed (e.g. its database URL through a proxy)."""
        return stack.start_worker(overrides)  # type: ignore[no-any-return]

    @staticmethod
    def post_timed(
        stack: Any, path: str, body: dict[str, Any], timeout: float
    ) -> tuple[int | None, Any, float]:
        """POST once with a client of its own: (status, or None on a client timeout; body; seconds taken)."""
        token = stack.env.get("SYNTHJOBS_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        started = time.monotonic()
        try:
            response = httpx.post(stack.api_url + path, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            return None, f"no answer in {timeout}s: {exc}", time.monotonic() - started
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload, time.monotonic() - started


@pytest.fixture
def kit(tmp_path: Path) -> FaultKit:
    """Helpers for the scenarios."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return FaultKit(tmp_path)
