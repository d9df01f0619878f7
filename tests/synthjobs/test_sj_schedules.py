"""Schedules fire each due time exactly once, a missed window once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from synthjobs.broker.queue import make_sender
from synthjobs.ledger import schedules
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import Job, JobState, ScheduleRun
from synthjobs.maintenance import tick as schedule_tick
from synthjobs.settings import Settings

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
TRAIN = {
    "model_name": "digits-cvae",
    "dataset": {"kind": "builtin", "name": "digits"},
    "config": {"epochs": 1},
}


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    # The broker is the embedded SQLite one: these tests are about SQL, and publishing really happens.
    return Settings(home=tmp_path, database_url=database_url)


def _schedule(settings: Settings, cron: str = "*/5 * * * *", name: str = "nightly", **extra: object) -> str:
    with session_scope(settings.resolved_database_url()) as session:
        schedule = schedules.add_schedule(
            session,
            now=T0,
            name=name,
            cron=cron,
            timezone="UTC",
            model_name="digits-cvae",
            train=TRAIN,
            policy={},
            **extra,
        )
        return schedule.id


def _runs(settings: Settings) -> list[ScheduleRun]:
    with session_scope(settings.resolved_database_url()) as session:
        return list(session.scalars(select(ScheduleRun).order_by(ScheduleRun.due_at)).all())


def test_nothing_fires_before_the_first_due_time(settings: Settings) -> None:
    _schedule(settings)
    assert schedule_tick.tick(settings, make_sender(settings), now=T0 + timedelta(minutes=4)) == []


def test_due_schedule_fires_once_and_moves_to_its_next_due_time(settings: Settings) -> None:
    schedule_id = _schedule(settings)
    sender = make_sender(settings)
    created = schedule_tick.tick(settings, sender, now=T0 + timedelta(minutes=5, seconds=3))
    assert len(created) == 1
    assert schedule_tick.tick(settings, sender, now=T0 + timedelta(minutes=6)) == []
    with session_scope(settings.resolved_database_url()) as session:
        schedule = schedules.get_schedule(session, schedule_id)
        assert schedule.next_due_at == T0 + timedelta(minutes=10)
        job = session.get(Job, created[0])
        assert job is not None and job.params["schedule"]["id"] == schedule_id
    assert [r.due_at for r in _runs(settings)] == [T0 + timedelta(minutes=5)]


def test_beat_down_for_a_day_fires_the_missed_window_once(settings: Settings) -> None:
    _schedule(settings)
    created = schedule_tick.tick(settings, make_sender(settings), now=T0 + timedelta(days=1, minutes=2))
    assert len(created) == 1
    assert [r.due_at for r in _runs(settings)] == [T0 + timedelta(days=1)]


def test_concurrent_ticks_create_one_job_per_due_time(settings: Settings) -> None:
    _schedule(settings)
    now = T0 + timedelta(minutes=5)
    created: list[str] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        created.extend(schedule_tick.tick(settings, make_sender(settings), now=now))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 1 and len(_runs(settings)) == 1


def test_paused_schedule_does_not_fire(settings: Settings) -> None:
    schedule_id = _schedule(settings)
    with session_scope(settings.resolved_database_url()) as session:
        schedules.get_schedule(session, schedule_id).paused = True
    assert schedule_tick.tick(settings, make_sender(settings), now=T0 + timedelta(hours=1)) == []


def _in_flight(settings: Settings) -> int:
    with session_scope(settings.resolved_database_url()) as session:
        states = (JobState.QUEUED.value, JobState.RUNNING.value)
        return len(session.scalars(select(Job.id).where(Job.state.in_(states))).all())


def test_firings_over_the_in_flight_quota_are_skipped_not_queued(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_concurrent_jobs": 3})
    ids = [_schedule(limited, "* * * * *", name=f"every-minute-{i}") for i in range(25)]
    sender = make_sender(limited)
    created = []
    for minute in range(1, 11):  # ten windows, the jobs never finishing: the 54 queued jobs
        created += schedule_tick.tick(limited, sender, now=T0 + timedelta(minutes=minute, seconds=1))
        assert _in_flight(limited) <= 3
    assert len(created) == 3
    runs = _runs(limited)
    assert len(runs) == 250  # every window of every schedule is recorded, fired or not
    skipped = [run for run in runs if run.job_id is None]
    assert len(skipped) == 247 and {run.outcome for run in skipped} == {"skipped"}
    assert {run.decision["reason"] for run in skipped} == {  # type: ignore[index]
        "over quota: 3 jobs queued or running; the limit is 3"
    }
    with session_scope(limited.resolved_database_url()) as session:
        assert all(schedules.get_schedule(session, i).next_due_at == T0 + timedelta(minutes=11) for i in ids)


def test_a_schedule_skipped_over_quota_fires_normally_in_its_next_window(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_concurrent_jobs": 1})
    ids = [_schedule(limited, "* * * * *", name=name) for name in ("a", "b")]
    sender = make_sender(limited)
    assert len(schedule_tick.tick(limited, sender, now=T0 + timedelta(minutes=1))) == 1
    (skipped,) = [run for run in _runs(limited) if run.job_id is None]
    assert skipped.outcome == "skipped"
    roomy = settings.model_copy(update={"max_concurrent_jobs": 10})
    assert len(schedule_tick.tick(roomy, sender, now=T0 + timedelta(minutes=2))) == 2
    second_window = [run for run in _runs(limited) if run.due_at == T0 + timedelta(minutes=2)]
    assert sorted(run.schedule_id for run in second_window if run.job_id) == sorted(ids)


def test_firings_count_toward_the_submissions_per_minute(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_submits_per_minute": 2})
    for i in range(4):
        _schedule(limited, "* * * * *", name=f"s{i}")
    assert len(schedule_tick.tick(limited, make_sender(limited), now=T0 + timedelta(minutes=1))) == 2
    reasons = {run.decision["reason"] for run in _runs(limited) if run.job_id is None}  # type: ignore[index]
    assert reasons == {"over quota: more than 2 submissions in the last minute"}
