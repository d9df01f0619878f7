"""`GET /metrics`: valid Prometheus text, numbers matching the ledger's rows, and the broker's queue depth."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.orm import Session

from api.routes import metrics as metrics_routes
from synthjobs.broker import depth
from synthjobs.devtools import processes
from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, JobKind, JobShard, JobState, ShardState, utcnow
from synthjobs.maintenance import metrics
from synthjobs.settings import Settings

TRAIN = {"dataset": "digits", "hyperparameters": {"epochs": 2}, "seed": 7}
# Family names as prometheus-client's parser reports them: a counter's family drops the `_total` that its
# sample (the name on the wire, e.g. `synthjobs_models_total`) carries.
FAMILIES = {
    "synthjobs_jobs": "gauge",
    "synthjobs_broker_up": "gauge",
    "synthjobs_queue_depth": "gauge",
    "synthjobs_task_duration_seconds": "histogram",
    "synthjobs_queue_wait_seconds": "histogram",
    "synthjobs_samples_generated": "counter",
    "synthjobs_bytes_uploaded": "counter",
    "synthjobs_training_epochs": "counter",
    "synthjobs_models": "counter",
}
COUNTER_SAMPLES = {f"{name}_total" for name, kind in FAMILIES.items() if kind == "counter"}


@dataclass
class Family:
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, **labels: str) -> float:
        """The one sample of this family (not a histogram) with exactly these labels."""
        (found,) = [v for _, got, v in self.samples if got == labels]
        return found


def parse_exposition(text: str) -> dict[str, Family]:
    """Every family, read by prometheus-client's parser, plus the histogram invariants Prometheus needs."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families = {
        family.name: Family(
            family.type, family.documentation, [(s.name, dict(s.labels), s.value) for s in family.samples]
        )
        for family in text_string_to_metric_families(text)
    }
    for name, family in families.items():
        if family.type == "histogram":
            _check_histogram(name, family)
    return families


def _check_histogram(name: str, family: Family) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample, labels, value in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": []})
        if sample == f"{name}_bucket":
            entry["buckets"].append((float(labels["le"]), value))
        else:
            entry[sample.removeprefix(name)] = value
    for key, entry in series.items():
        bounds = [bound for bound, _ in entry["buckets"]]
        counts = [count for _, count in entry["buckets"]]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), f"{key}: le not ascending"
        assert bounds and math.isinf(bounds[-1]), f"{key}: buckets must end with le=+Inf"
        assert counts == sorted(counts), f"{key}: buckets are not cumulative: {counts}"
        assert counts[-1] == entry["_count"], f"{key}: +Inf bucket {counts[-1]} != _count"
        assert "_sum" in entry, f"{key}: no _sum"


# --- Fixtures and helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def close_broker_clients() -> Iterator[None]:
    yield
    depth.dispose_broker_clients()


def scrape(client: TestClient) -> dict[str, Family]:
    """GET /metrics as Prometheus does: no token. Checks the status and content type, parses the text."""
    app = client.app
    if not any(getattr(route, "path", None) == "/metrics" for route in app.routes):  # type: ignore[attr-defined]
        app.include_router(metrics_routes.router)  # type: ignore[attr-defined]
    with TestClient(app) as anonymous:
        response = anonymous.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse_exposition(response.text)


def histogram(family: Family, **labels: str) -> dict[str, Any]:
    """{"buckets": {le: count}, "sum": ..., "count": ...} of one histogram series."""
    result: dict[str, Any] = {"buckets": {}}
    for sample, got, value in family.samples:
        rest = {k: v for k, v in got.items() if k != "le"}
        if rest != labels:
            continue
        if sample.endswith("_bucket"):
            result["buckets"][got["le"]] = value
        else:
            result[sample.rsplit("_", 1)[1]] = value
    return result


def add_finished_job(
    session: Session,
    kind: JobKind,
    state: JobState,
    seconds: float | None,
    params: dict[str, Any] | None = None,
) -> str:
    """A job in `state`; when `seconds` is given it ran that long (finished_at - started_at)."""
    job = jobs.create_job(session, kind, params or {})
    finished = utcnow()
    values: dict[str, Any] = {"state": state.value}
    if state in jobs.TERMINAL_STATES:
        values["finished_at"] = finished
    if seconds is not None:
        values["started_at"] = finished - timedelta(seconds=seconds)
    session.execute(update(Job).where(Job.id == job.id).values(**values))
    return job.id


# --- Tests ------------------------------------------------------------------------------------------------


def test_metrics_are_valid_prometheus_text_served_without_a_token(api: TestClient) -> None:
    families = scrape(api)
    assert {name: family.type for name, family in families.items()} == FAMILIES
    assert all(family.help for family in families.values())
    counters = [name for name, kind in FAMILIES.items() if kind == "counter"]
    assert {sample for name in counters for sample, _, _ in families[name].samples} == COUNTER_SAMPLES
    jobs_gauge = families["synthjobs_jobs"]
    assert len(jobs_gauge.samples) == len(JobKind) * len(JobState)
    assert {value for _, _, value in jobs_gauge.samples} == {0}
    assert families["synthjobs_broker_up"].value() == 1
    assert families["synthjobs_queue_depth"].value(queue="gpu") == 0
    for kind in JobKind:
        assert histogram(families["synthjobs_task_duration_seconds"], kind=kind.value)["count"] == 0


def test_metrics_match_the_rows_in_the_ledger(
    api: TestClient, ledger_url: Callable[[TestClient], str], add_model: Callable[..., str]
) -> None:
    with session_scope(ledger_url(api)) as session:
        trained = add_finished_job(session, JobKind.TRAIN, JobState.SUCCEEDED, 3.0)
        add_finished_job(session, JobKind.TRAIN, JobState.FAILED, 100.0)
        add_finished_job(session, JobKind.TRAIN, JobState.RUNNING, 50.0)  # not finished: not in the histogram
        add_finished_job(
            session, JobKind.TRAIN, JobState.CANCELLED, None
        )  # cancelled while queued: never ran
        sampled = add_finished_job(session, JobKind.SAMPLE, JobState.SUCCEEDED, 20_000.0)
        add_finished_job(session, JobKind.SAMPLE, JobState.QUEUED, None)
        for epoch in range(1, 5):
            jobs.add_event(session, trained, "epoch", f"epoch {epoch}/4", {"epoch": epoch})
        jobs.add_event(session, trained, "uploaded", "stored", {"checkpoint_uri": "file:///x", "bytes": 1234})
        jobs.add_event(session, trained, "resumed", "resumed from epoch 2", {"epoch": 2})
        shards.create_shards(session, sampled, [[5, 5], [3, 2], [4, 0]])
        for index, size in ((0, 1000), (1, 500)):
            session.execute(
                update(JobShard)
                .where(JobShard.job_id == sampled, JobShard.index == index)
                .values(state=ShardState.DONE.value, bytes=size)
            )
    add_model(api)
    add_model(api)

    families = scrape(api)

    expected = {
        ("train", "SUCCEEDED"): 1,
        ("train", "FAILED"): 1,
        ("train", "RUNNING"): 1,
        ("train", "CANCELLED"): 1,
        ("sample", "SUCCEEDED"): 1,
        ("sample", "QUEUED"): 1,
    }
    for _, labels, value in families["synthjobs_jobs"].samples:
        assert value == expected.get((labels["kind"], labels["state"]), 0), labels
    durations = families["synthjobs_task_duration_seconds"]
    train = histogram(durations, kind="train")
    assert list(train["buckets"]) == [*(f"{float(b)}" for b in metrics.DURATION_BUCKETS), "+Inf"]
    assert list(train["buckets"].values()) == [0, 1, 1, 1, 2, 2, 2, 2, 2]  # 3 s and 100 s
    assert train["count"] == 2 and train["sum"] == pytest.approx(103.0, abs=0.01)
    sample = histogram(durations, kind="sample")
    assert [v for le, v in sample["buckets"].items() if le != "+Inf"] == [0] * len(metrics.DURATION_BUCKETS)
    assert sample["buckets"]["+Inf"] == 1 and sample["sum"] == pytest.approx(20_000.0, abs=0.01)
    assert families["synthjobs_samples_generated"].value() == 10 + 5  # the PENDING shard is not counted
    assert families["synthjobs_bytes_uploaded"].value() == 1000 + 500 + 1234
    assert families["synthjobs_training_epochs"].value() == 4
    assert families["synthjobs_models"].value() == 2


def test_queue_depth_counts_tasks_waiting_on_the_embedded_broker(api: TestClient) -> None:
    assert scrape(api)["synthjobs_queue_depth"].value(queue="gpu") == 0  # kombu has not made its tables yet
    for _ in range(2):
        assert api.post("/v1/jobs/train", json=TRAIN).status_code == 202
    families = scrape(api)
    assert families["synthjobs_broker_up"].value() == 1
    assert families["synthjobs_queue_depth"].value(queue="gpu") == 2


def test_unreachable_broker_reports_broker_down_and_leaves_out_the_depth(
    make_api: Callable[..., TestClient],
) -> None:
    closed_port = processes.free_port()
    api = make_api(broker_url=f"redis://127.0.0.1:{closed_port}/0", enqueue_timeout=0.5)
    families = scrape(api)
    assert families["synthjobs_broker_up"].value() == 0
    assert "synthjobs_queue_depth" not in families
    assert families["synthjobs_models"].value() == 0  # the ledger's metrics are still there


def test_queue_depth_is_the_length_of_the_redis_list(
    make_api: Callable[..., TestClient], redis_url: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    api = make_api(broker_url=redis_url, queue=queue)
    for _ in range(3):
        assert api.post("/v1/jobs/train", json=TRAIN).status_code == 202
    families = scrape(api)
    assert families["synthjobs_broker_up"].value() == 1
    assert families["synthjobs_queue_depth"].value(queue=queue) == 3


def test_durations_are_bucketed_by_the_database(database_url: str, tmp_path: Path) -> None:
    """The bucketing in SQL, on SQLite (julianday) and PostgreSQL (date_part epoch)."""
    runs = [0.25, 0.9, 7.5, 59.0, 3599.5, 99_999.0]
    with session_scope(database_url) as session:
        for seconds in runs:
            add_finished_job(session, JobKind.TRAIN, JobState.SUCCEEDED, seconds)
        skewed = add_finished_job(session, JobKind.SAMPLE, JobState.FAILED, 0.0)
        # Another machine's clock finished it "before" it started: counted as 0 s, not as negative time.
        session.execute(
            update(Job).where(Job.id == skewed).values(started_at=utcnow() + timedelta(seconds=2))
        )
    with session_scope(database_url) as session:
        text = metrics.collect(session, Settings(home=tmp_path, database_url=database_url))
    durations = parse_exposition(text)["synthjobs_task_duration_seconds"]
    train = histogram(durations, kind="train")
    assert list(train["buckets"].values()) == [2, 2, 3, 4, 4, 4, 5, 5, 6]
    assert train["sum"] == pytest.approx(sum(runs), abs=0.01) and train["count"] == len(runs)
    sample = histogram(durations, kind="sample")
    assert sample["buckets"]["1.0"] == 1 and sample["sum"] == pytest.approx(0.0, abs=0.01)


def test_queue_waits_are_bucketed_per_tenant_and_stage(database_url: str, tmp_path: Path) -> None:
    """Submit -> first claim of jobs and release -> claim of shards, on SQLite and PostgreSQL."""
    now = utcnow()
    with session_scope(database_url) as session:
        for tenant, waited in (("acme", 0.3), ("acme", 20.0), ("globex", 2.0)):
            job = jobs.create_job(session, JobKind.TRAIN, {}, tenant=tenant)
            session.flush()
            values = {"created_at": now - timedelta(seconds=waited), "started_at": now}
            session.execute(update(Job).where(Job.id == job.id).values(**values))
        jobs.create_job(session, JobKind.TRAIN, {}, tenant="acme")  # still queued: no wait recorded yet
        sampled = jobs.create_job(session, JobKind.SAMPLE, {}, tenant="globex")
        session.flush()
        shards.create_shards(session, sampled.id, [[5, 5], [3, 2], [4, 0]])
        for index, waited in ((0, 0.05), (1, 4.0)):
            session.execute(
                update(JobShard)
                .where(JobShard.job_id == sampled.id, JobShard.index == index)
                .values(released_at=now - timedelta(seconds=waited), claimed_at=now)
            )
    with session_scope(database_url) as session:
        text = metrics.collect(session, Settings(home=tmp_path, database_url=database_url))
    waits = parse_exposition(text)["synthjobs_queue_wait_seconds"]
    acme = histogram(waits, tenant="acme", stage="job")
    assert acme["count"] == 2 and acme["sum"] == pytest.approx(20.3, abs=0.01)
    assert acme["buckets"]["0.5"] == 1 and acme["buckets"]["15.0"] == 1 and acme["buckets"]["60.0"] == 2
    assert histogram(waits, tenant="globex", stage="job")["count"] == 1
    shard = histogram(waits, tenant="globex", stage="shard")
    assert (
        shard["count"] == 2 and shard["buckets"]["0.1"] == 1 and shard["sum"] == pytest.approx(4.05, abs=0.01)
    )
    assert histogram(waits, tenant="acme", stage="shard").get("count") is None  # no shards of its own


def test_label_values_are_escaped(sqlite_url: str, tmp_path: Path) -> None:
    queue = 'odd "queue"\\name'
    with session_scope(sqlite_url) as session:
        text = metrics.collect(session, Settings(home=tmp_path, database_url=sqlite_url, queue=queue))
    assert parse_exposition(text)["synthjobs_queue_depth"].value(queue=queue) == 0
