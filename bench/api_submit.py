"""Sustained job submissions per second through the real API, next to a minimal FastAPI route.

    .venv/bin/python bench/api_submit.py                       # 1, 8, 32 clients; 2 s warm-up + 10 s each
    .venv/bin/python bench/api_submit.py --concurrency 1,4 --duration 5 --rounds 2 --skip-profile

Two uvicorn processes, one worker each, started the same way an operator starts them, on one fresh
PostgreSQL database (created, migrated with `upgrade_database`, dropped) and one Redis database (flushed
before and after), with no Celery worker, so every message stays queued:

- real: `synthjobs api` (`synthjobs.devtools.processes.start_api`) taking `POST /v1/jobs/train`, a small
  valid body;
- minimal: `bench/minimal_submit_app.py`, one route that INSERTs a row into the same `jobs` table and
  publishes the same task by name to the same Redis (its own queue, so each side's messages can be counted).

One load generator drives both in the same run: asyncio with N tasks sharing one `httpx.AsyncClient` (keep-
alive, N connections, loopback only), each sending one request at a time. Per point it runs a warm-up, then
counts the requests that complete inside the measured window (bounded by --duration and --max-requests).
With no worker, queued jobs pile up; each point starts on an empty `jobs` table (TRUNCATE) unless
--keep-rows, so that concurrency and table size are not confounded. Latency is per request as the
client sees it. Every request carries `Authorization: Bearer <admin token>`
(the processes get the token as `SYNTHJOBS_ADMIN_TOKEN`) and the processes get per-tenant quotas high enough
never to refuse the load. Server CPU per submit (from /proc) is printed beside the rates: on a busy 2-vCPU
machine it moves less than the rates do.

Then one submission is profiled in this process, on the same database and Redis: the route function is
called directly (a fresh session from `api.deps.get_session`, the body validated as FastAPI does, the
response model built and serialised) with its collaborators wrapped to split the time into phases; the whole
request goes through the ASGI app (no server), with the thread pool and with it inlined (so a profiler on
this thread sees everything), for the real and the minimal app; then pyinstrument's call tree (when it is
installed) and cProfile's own time by package. Prints only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import common
import httpx
from common import services

from synthjobs.devtools import processes

BENCH_DIR = Path(__file__).resolve().parent
PATH = "/v1/jobs/train"
BODY = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 0}
LOOP = asyncio.new_event_loop()  # runs an async route or dependency when the route is called directly
UNLIMITED = str(10**9)  # per-tenant quotas (submits per minute, queued jobs) that the load never reaches


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (default 1,8,32)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per point (default 2)")
    p.add_argument("--max-requests", type=int, default=50_000, help="cap on requests per point")
    p.add_argument("--request-timeout", type=float, default=10.0, help="seconds before a request is an error")
    p.add_argument(
        "--rounds", type=int, default=1, help="repeat each point, alternating which side goes first"
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("SYNTHJOBS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database to CREATE/DROP the benchmark's database from",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379", help="Redis server (no database number)")
    p.add_argument("--redis-db", type=int, default=13, help="Redis database, flushed before and after")
    p.add_argument(
        "--admin-token", default="bench-admin-token", help="SYNTHJOBS_ADMIN_TOKEN of the processes"
    )
    p.add_argument("--idempotency-keys", action="store_true", help="send a fresh Idempotency-Key per POST")
    p.add_argument(
        "--keep-rows",
        action="store_true",
        help="let queued jobs pile up across points (default: TRUNCATE jobs before each point)",
    )
    p.add_argument("--profile-submits", type=int, default=500, help="submissions profiled in-process")
    p.add_argument("--skip-profile", action="store_true")
    p.add_argument("--skip-load", action="store_true", help="profile only (no servers, no load)")
    p.add_argument(
        "--storage-quota-off",
        action="store_true",
        help="the real API without the storage quota (SYNTHJOBS_MAX_STORAGE_BYTES_PER_TENANT=0): what "
        "its per-submit SQL sum costs",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and say where")
    return p.parse_args()


# --- load generator -------------------------------------------------------------------------------------


@dataclass
class Point:
    """What one side did at one concurrency: completions inside the measured window."""

    side: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, accepted (202) requests only
    errors: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # the server process's CPU over the whole point, warm-up included
    client_cpu_seconds: float = 0.0  # the load generator's (this process's) CPU over the point
    requests: int = 0  # every request the point sent, warm-up included

    def merge(self, other: Point) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors.update(other.errors)
        self.cpu_seconds += other.cpu_seconds
        self.requests += other.requests
        self.client_cpu_seconds += other.client_cpu_seconds

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def cpu_ms_per_request(self) -> float | None:
        return 1000 * self.cpu_seconds / self.requests if self.requests else None


async def drive(
    url: str, concurrency: int, args: argparse.Namespace, headers: dict[str, str], side: str
) -> Point:
    """N clients, each POSTing one submission at a time, for warm-up + duration (or max requests)."""
    point = Point(side, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    payload = json.dumps(BODY).encode()
    sent = 0
    last_done = 0.0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=args.request_timeout) as client:
        loop_start = time.perf_counter()
        window_start = loop_start + args.warmup
        window_end = window_start + args.duration

        async def client_task() -> None:
            nonlocal sent, last_done
            while time.perf_counter() < window_end and sent < args.max_requests:
                sent += 1
                request_headers = {**headers, "Content-Type": "application/json"}
                if args.idempotency_keys:
                    request_headers["Idempotency-Key"] = uuid.uuid4().hex
                started = time.perf_counter()
                try:
                    response = await client.post(PATH, content=payload, headers=request_headers)
                    outcome = str(response.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                done = time.perf_counter()
                if window_start <= done <= window_end:
                    last_done = max(last_done, done)
                    if outcome == "202":
                        point.latencies.append(done - started)
                    else:
                        point.errors[outcome] += 1

        await asyncio.gather(*(client_task() for _ in range(concurrency)))
    capped = sent >= args.max_requests
    point.seconds = (last_done if capped else window_end) - window_start
    point.requests = sent
    return point


def measure(
    url: str, pid: int, concurrency: int, args: argparse.Namespace, headers: dict[str, str], side: str
) -> Point:
    """One point against one server, with the server's CPU seconds over it."""
    cpu_before, client_before = common.cpu_seconds(pid), time.process_time()
    point = asyncio.run(drive(url, concurrency, args, headers, side))
    point.cpu_seconds = common.cpu_seconds(pid) - cpu_before
    point.client_cpu_seconds = time.process_time() - client_before
    return point


# --- services and processes -----------------------------------------------------------------------------


def start_minimal(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The minimal app under uvicorn, with the same server settings as `synthjobs api` (one worker)."""
    args = [sys.executable, "-m", "uvicorn", "minimal_submit_app:create_app", "--factory"]
    args += ["--app-dir", str(BENCH_DIR), "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until the server accepts a submission (no /healthz on the minimal app, so POST one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{common.tail(log)}")
        try:
            if httpx.post(f"{url}{PATH}", json=BODY, timeout=5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{common.tail(log)}")


def empty_ledger(database_url: str) -> int:
    """TRUNCATE jobs (and what references them), so the next point starts as the first; returns the rows."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:
        rows = int(connection.execute(text("SELECT count(*) FROM jobs")).scalar_one())
        connection.execute(text("TRUNCATE TABLE jobs CASCADE"))
    engine.dispose()
    return rows


def queue_length(redis_url: str, queue: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


# --- the load run ---------------------------------------------------------------------------------------


def run_load(args: argparse.Namespace, home: Path, database_url: str, redis_url: str) -> None:
    logs = home / "logs"
    logs.mkdir(parents=True)
    extra = {
        "SYNTHJOBS_ADMIN_TOKEN": args.admin_token,
        "SYNTHJOBS_MAX_SUBMITS_PER_MINUTE": UNLIMITED,
        "SYNTHJOBS_MAX_CONCURRENT_JOBS": UNLIMITED,
    }
    if args.storage_quota_off:
        extra["SYNTHJOBS_MAX_STORAGE_BYTES_PER_TENANT"] = "0"
    env = common.stack_env(home, database_url=database_url, broker_url=redis_url, extra=extra)
    minimal_env = {**env, "SYNTHJOBS_QUEUE": env["SYNTHJOBS_QUEUE"] + "-minimal"}
    real_port, minimal_port = processes.free_port(), processes.free_port()
    real_url, minimal_url = f"http://127.0.0.1:{real_port}", f"http://127.0.0.1:{minimal_port}"
    real = processes.start_api(env, real_port, logs / "api.log")
    minimal = start_minimal(minimal_env, minimal_port, logs / "minimal.log")
    headers = {"Authorization": f"Bearer {args.admin_token}"}
    sides = {"real": (real_url, real.pid), "minimal": (minimal_url, minimal.pid)}
    results: dict[tuple[str, int], Point] = {}
    rows = 0
    try:
        processes.wait_for_api(real_url, real, timeout=90)
        wait_ready(minimal_url, minimal, logs / "minimal.log")
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            for round_ in range(args.rounds):
                order = ["real", "minimal"] if round_ % 2 == 0 else ["minimal", "real"]
                for side in order:
                    url, pid = sides[side]
                    if not args.keep_rows:
                        rows += empty_ledger(database_url)
                    point = measure(url, pid, concurrency, args, headers, side)
                    results.setdefault((side, concurrency), Point(side, concurrency)).merge(point)
                    print(
                        f"  {side:>7} c={concurrency:<3} round {round_ + 1}: {point.rate:8.1f}/s "
                        f"p50 {common.fmt(point.percentile_ms(0.5))} ms, errors {dict(point.errors) or 0}; "
                        f"CPU ms/request: server {common.fmt(point.cpu_ms_per_request)}, load generator "
                        f"{common.fmt(1000 * point.client_cpu_seconds / max(point.requests, 1))}",
                        flush=True,
                    )
    finally:
        processes.stop(real)
        processes.stop(minimal)
    print_load_table(args, results)
    print(
        f"sanity: {rows + empty_ledger(database_url):,} job rows written to SQL; messages queued in Redis: "
        f"real {queue_length(redis_url, env['SYNTHJOBS_QUEUE']):,}, "
        f"minimal {queue_length(redis_url, minimal_env['SYNTHJOBS_QUEUE']):,}"
    )
    if args.keep_logs:
        print(f"logs: {logs}")


def print_load_table(args: argparse.Namespace, results: dict[tuple[str, int], Point]) -> None:
    rows = []
    for concurrency in sorted({c for _, c in results}):
        real, minimal = results[("real", concurrency)], results[("minimal", concurrency)]
        ratio = real.rate / minimal.rate if minimal.rate else float("nan")
        errors = sum(real.errors.values()) + sum(minimal.errors.values())
        rows.append(
            [
                concurrency,
                real.rate,
                real.percentile_ms(0.5),
                real.percentile_ms(0.99),
                minimal.rate,
                minimal.percentile_ms(0.5),
                minimal.percentile_ms(0.99),
                ratio,
                real.cpu_ms_per_request,
                minimal.cpu_ms_per_request,
                errors,
            ]
        )
    headers = ["clients", "real /s", "p50 ms", "p99 ms", "minimal /s", "p50 ms", "p99 ms", "real/minimal"]
    headers += ["real CPU ms/req", "minimal CPU ms/req", "errors"]
    title = (
        f"POST {PATH}, {args.warmup:g} s warm-up + {args.duration:g} s per point, {args.rounds} round(s); "
        f"targets: real/minimal >= 0.7 at every concurrency, p99 < 20 ms at 1 client"
    )
    common.print_table(headers, rows, title=title)
    for (side, concurrency), point in sorted(results.items()):
        if point.errors:
            print(f"errors, {side} at {concurrency} clients: {dict(point.errors)}")


# --- profile of one submission, in-process ---------------------------------------------------------------


class PhaseClock:
    """Exclusive wall time per phase: entering a nested phase pauses the one around it."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []

    def enter(self, name: str) -> None:
        now = time.perf_counter()
        if self._stack:
            self.totals[self._stack[-1][0]] += now - self._stack[-1][1]
        self._stack.append([name, now])

    def leave(self) -> None:
        now = time.perf_counter()
        name, since = self._stack.pop()
        self.totals[name] += now - since
        if self._stack:
            self._stack[-1][1] = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.enter(name)
        try:
            yield
        finally:
            self.leave()

    def wrap(self, name: str | Callable[[], str], fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name() if callable(name) else name):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def wrapped_collaborators(clock: PhaseClock) -> Iterator[None]:
    """Wrap what the route calls, so each call's time lands in its phase; undone on exit."""
    from sqlalchemy.orm import Session

    from api import submit
    from api.quota import QuotaGuard
    from api.routes import jobs as jobs_routes
    from synthjobs.ledger import jobs

    def flush_phase() -> str:
        around = clock._stack[-1][0] if clock._stack else None
        if around == "SQL: COMMIT round trip":
            return "SQL: event INSERT (flushed by commit)"
        if around == "route: create_job (ORM objects)":
            return "SQL: job INSERT (flush)"
        return "SQL: other flushes"

    patches = [
        (jobs_routes, "train_params", "route: train_params (limits, dataset spec)"),
        (jobs_routes, "check_quota", "route: check_quota (SQL counts)"),
        (QuotaGuard, "check", "route: quota check (cached SQL counts)"),
        (submit, "check_storage", "route: check_storage (SQL sum)"),
        (jobs, "create_job", "route: create_job (ORM objects)"),
        (jobs, "insert_job", "route: insert_job (job + event INSERT)"),
        (jobs_routes, "enqueue_job", "broker: publish (send_task to Redis)"),
        (submit, "enqueue_job", "broker: publish (send_task to Redis)"),
        (Session, "flush", flush_phase),
        (Session, "commit", "SQL: COMMIT round trip"),
    ]
    patches = [patch for patch in patches if hasattr(patch[0], patch[1])]  # as the route stands today
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    try:
        for owner, attr, name in patches:
            setattr(owner, attr, clock.wrap(name, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def call_route(settings: Any, sender: Any, clock: PhaseClock, token: str) -> bytes:
    """`POST /v1/jobs/train`'s route function called as FastAPI calls it: body, dependencies, response."""
    from fastapi import Response

    from api import deps
    from api.quota import QuotaGuard
    from api.routes import jobs as jobs_routes
    from api.schemas import JobOut, TrainRequest

    with clock.phase("request: JSON parse + TrainRequest validation"):
        body = TrainRequest.model_validate(json.loads(json.dumps(BODY).encode()))
    request = SimpleNamespace(
        app=SimpleNamespace(
            state=SimpleNamespace(settings=settings, session_factory=deps.session_factory(settings))
        ),
        headers={"authorization": f"Bearer {token}"},
    )
    with clock.phase("session: open"):
        sessions = deps.get_session(request)  # type: ignore[arg-type]
        session = LOOP.run_until_complete(anext(sessions)) if inspect.isasyncgen(sessions) else next(sessions)
    try:
        given = {"body": body, "session": session, "sender": sender, "settings": settings}
        given["response"] = Response()
        params = inspect.signature(jobs_routes.submit_train).parameters
        if "tenant" in params:  # auth: the tenant of the bearer token
            with clock.phase("auth: tenant for the bearer token"):
                given["tenant"] = deps.tenant_for_request(request, session, settings)  # type: ignore[arg-type]
        if "quota" in params:  # per-tenant limits, as the app holds them
            given["quota"] = QuotaGuard(settings)
        if "idem" in params:  # no Idempotency-Key: nothing to replay or remember
            given["idem"] = deps.IdempotencyRequest(None, "")  # type: ignore[attr-defined]
        if "at" in params:  # the submit path's dependencies in one (api.submit.Submission)
            from api.submit import Submission

            with clock.phase("auth: tenant for the bearer token"):
                tenant = deps.tenant_for_request(request, session, settings)  # type: ignore[arg-type]
            idem, quota = deps.IdempotencyRequest(None, ""), QuotaGuard(settings)
            given["at"] = Submission(session, sender, settings, tenant, idem, quota, given["response"])
        required = [name for name, p in params.items() if p.default is inspect.Parameter.empty]
        if missing := [name for name in required if name not in given]:
            raise RuntimeError(f"submit_train now needs {missing}; bench/api_submit.py must pass them")
        with clock.phase("route: the rest (job_out, ...)"):
            result = jobs_routes.submit_train(**{name: given[name] for name in params if name in given})
            if inspect.iscoroutine(result):  # an async route (its work in one thread-pool hop)
                result = LOOP.run_until_complete(result)
    finally:
        with clock.phase("session: close (connection back to the pool)"):
            if inspect.isasyncgen(sessions):
                LOOP.run_until_complete(sessions.aclose())
            else:
                sessions.close()
    with clock.phase("response: JobOut validation + JSON"):
        return JobOut.model_validate(result).model_dump_json().encode()


def print_phases(settings: Any, sender: Any, n: int, token: str) -> float:
    """The route's phases, mean of n calls; returns the mean seconds per call."""
    for _ in range(50):  # warm the pools, caches and the broker connection
        call_route(settings, sender, PhaseClock(), token)
    clock = PhaseClock()
    with wrapped_collaborators(clock):
        started = time.perf_counter()
        for _ in range(n):
            call_route(settings, sender, clock, token)
        total = time.perf_counter() - started
    rows: list[list[Any]] = [
        [name, 1e6 * seconds / n, 100 * seconds / total]
        for name, seconds in sorted(clock.totals.items(), key=lambda item: -item[1])
    ]
    rows.append(["(loop and timers)", 1e6 * (total - sum(clock.totals.values())) / n, None])
    rows.append(["total per submission", 1e6 * total / n, 100.0])
    title = f"One submission in-process, by phase (mean of {n}; the route function called directly)"
    common.print_table(["phase", "us", "%"], rows, title=title)
    return total / n


async def asgi_post(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One POST straight into the ASGI app (no server, no socket); returns the status."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


@contextmanager
def thread_hops(inline: bool) -> Iterator[list[int]]:
    """Count the app's hops to the thread pool (sync routes and dependencies); optionally run them inline.

    Inline, everything runs on this thread, so a profiler started here sees the whole request.
    """
    import anyio.to_thread

    original = anyio.to_thread.run_sync
    count = [0]

    async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return func(*args) if inline else await original(func, *args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]
    try:
        yield count
    finally:
        anyio.to_thread.run_sync = original


def asgi_requests(app: Any, n: int, headers: dict[str, str], inline: bool) -> tuple[float, float]:
    """Mean seconds per request and thread-pool hops per request, n requests after a warm-up."""
    body = json.dumps(BODY).encode()
    raw = [
        (k.lower().encode(), v.encode()) for k, v in {**headers, "Content-Type": "application/json"}.items()
    ]

    async def run() -> float:
        for _ in range(50):
            await asgi_post(app, body, raw)
        started = time.perf_counter()
        for _ in range(n):
            if (status := await asgi_post(app, body, raw)) != 202:
                raise RuntimeError(f"in-process submit answered {status}")
        return time.perf_counter() - started

    with thread_hops(inline) as hops:
        seconds = asyncio.run(run())
    return seconds / n, hops[0] / (n + 50)


@contextmanager
def minimal_app_in_process(settings: Any) -> Iterator[Any]:
    """The minimal app built in this process on `settings`' database, broker and queue."""
    from synthjobs.settings import get_settings

    sys.path.insert(0, str(BENCH_DIR))
    import minimal_submit_app

    env = {
        "SYNTHJOBS_DATABASE_URL": settings.resolved_database_url(),
        "SYNTHJOBS_BROKER_URL": settings.resolved_broker_url(),
        "SYNTHJOBS_QUEUE": settings.queue,
        "SYNTHJOBS_HOME": str(settings.home),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield minimal_submit_app.create_app()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()


def profile_submit(args: argparse.Namespace, home: Path, database_url: str, redis_url: str) -> None:
    from api.app import create_app
    from synthjobs.ledger.db import dispose_engines
    from synthjobs.settings import Settings

    settings = Settings(
        home=home / "profile",
        database_url=database_url,
        broker_url=redis_url,
        queue=f"bench-profile-{uuid.uuid4().hex[:8]}",
        admin_token=args.admin_token,
        max_submits_per_minute=int(UNLIMITED),
        max_concurrent_jobs=int(UNLIMITED),
    )
    headers = {"Authorization": f"Bearer {args.admin_token}"}
    n = args.profile_submits
    app = create_app(settings)
    try:
        route_seconds = print_phases(settings, app.state.sender, n, args.admin_token)
        with minimal_app_in_process(settings) as minimal:
            rows = []
            for name, target in (("real", app), ("minimal", minimal)):
                pooled, hops = asgi_requests(target, n, headers, inline=False)
                inline, _ = asgi_requests(target, n, headers, inline=True)
                rows.append([name, 1e6 * pooled, 1e6 * inline, 1e6 * (pooled - inline), hops])
        title = (
            f"The whole request in-process through ASGI (no server, no socket; mean of {n}); "
            f"the route function alone took {1e6 * route_seconds:.0f} us"
        )
        headers_ = ["app", "us/request", "us, thread pool inlined", "thread-pool cost us", "hops/request"]
        common.print_table(headers_, rows, title=title)
        print_profile(lambda: asgi_requests(app, n, headers, inline=True), n)
    finally:
        app.state.sender.close()
        dispose_engines()


def print_profile(run: Callable[[], Any], n: int) -> None:
    """pyinstrument's call tree of n whole requests (thread pool inlined), then own time by package."""
    import cProfile
    import pstats

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("(pyinstrument is not installed: cProfile only)\n")
    else:
        profiler = Profiler()
        profiler.start()
        run()
        profiler.stop()
        print(f"pyinstrument, {n} whole requests in-process (frames under 3 % hidden):\n")
        print(profiler.output_text(processor_options={"filter_threshold": 0.03}))
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    by_package: dict[str, float] = defaultdict(float)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, own, _, _) in stats.items():
        by_package[package_of(filename, function)] += own
    total = sum(by_package.values())
    rows = [[name, 100 * own / total] for name, own in sorted(by_package.items(), key=lambda kv: -kv[1])[:15]]
    common.print_table(["package (cProfile own time)", "%"], rows, title=f"cProfile, the same {n} requests")


def package_of(filename: str, function: str) -> str:
    """The package a profiled function belongs to; C functions by name (socket waits show up there)."""
    if filename == "~":
        return f"C: {function}"[:60]
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for project in ("api", "synthjobs", "bench"):
        if f"/{project}/" in filename:
            return f"{project}/ (this project)"
    return "stdlib: " + Path(filename).stem


# --- main -----------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} CPUs visible; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"PostgreSQL from {args.database_url.split('@')[-1]}, Redis {args.redis_url} db {args.redis_db}")
    with (
        tempfile.TemporaryDirectory(prefix="bench-api-submit-") as tmp,
        services.fresh_postgres_database(args.database_url, "synthjobs_bench") as database_url,
        services.flushed_redis(args.redis_url, args.redis_db) as redis_url,
    ):
        home = Path(tmp)
        if args.keep_logs:
            home = Path(tempfile.mkdtemp(prefix="bench-api-submit-logs-"))
        if not args.skip_load:
            run_load(args, home, database_url, redis_url)
        if not args.skip_profile:
            profile_submit(args, home, database_url, redis_url)
    print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
