"""Schedules fire each due time exactly once, a missed window once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from synthjobs import schedules
from synthjobs.db import session_scope
from synthjobs.models import Job, ScheduleRun
from synthjobs.queue import make_sender
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


def _schedule(settings: Settings, cron: str = "*/5 * * * *", **extra: object) -> str:
    with session_scope(settings.resolved_database_url()) as session:
        schedule = schedules.add_schedule(
            session,
            now=T0,
            name="nightly",
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
    assert schedules.tick(settings, make_sender(settings), now=T0 + timedelta(minutes=4)) == []


def test_due_schedule_fires_once_and_moves_to_its_next_due_time(settings: Settings) -> None:
    schedule_id = _schedule(settings)
    sender = make_sender(settings)
    created = schedules.tick(settings, sender, now=T0 + timedelta(minutes=5, seconds=3))
    assert len(created) == 1
    assert schedules.tick(settings, sender, now=T0 + timedelta(minutes=6)) == []
    with session_scope(settings.resolved_database_url()) as session:
        schedule = schedules.get_schedule(session, schedule_id)
        assert schedule.next_due_at == T0 + timedelta(minutes=10)
        job = session.get(Job, created[0])
        assert job is not None and job.params["schedule"]["id"] == schedule_id
    assert [r.due_at for r in _runs(settings)] == [T0 + timedelta(minutes=5)]


def test_beat_down_for_a_day_fires_the_missed_window_once(settings: Settings) -> None:
    _schedule(settings)
    created = schedules.tick(settings, make_sender(settings), now=T0 + timedelta(days=1, minutes=2))
    assert len(created) == 1
    assert [r.due_at for r in _runs(settings)] == [T0 + timedelta(days=1)]


def test_concurrent_ticks_create_one_job_per_due_time(settings: Settings) -> None:
    _schedule(settings)
    now = T0 + timedelta(minutes=5)
    created: list[str] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        created.extend(schedules.tick(settings, make_sender(settings), now=now))

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
    assert schedules.tick(settings, make_sender(settings), now=T0 + timedelta(hours=1)) == []
