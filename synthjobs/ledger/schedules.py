"""Schedules in SQL and the firing of one due time, exactly once (the tick is `maintenance.tick`).

A tick (run by `synthjobs beat` through a periodic task, or `synthjobs tick`) finds schedules whose next due
time has passed and fires each at its LATEST missed due time only, so a beat that was down for a day fires
once, not once per missed interval. Each firing inserts a run keyed by (schedule id, due time): two ticks
racing — two beat processes — cannot both insert it, so they cannot both create a job.

A firing obeys the tenant's job quota like a submit does (`synthjobs.ledger.quota`, counted in SQL in the
firing's own transaction): over it, the run is recorded as `skipped` with the reason and no job is queued, and
the schedule moves on to its next due time as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthjobs.errors import SynthJobsError
from synthjobs.ledger import jobs, quota
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.tables import JobKind, Schedule, ScheduleRun, utcnow
from synthjobs.rules.cron import CronSchedule
from synthjobs.settings import Settings

log = logging.getLogger(__name__)


class ScheduleNotFound(SynthJobsError):
    """No schedule has that id."""


def cron_of(schedule: Schedule) -> CronSchedule:
    return CronSchedule.parse(schedule.cron, schedule.timezone)


def add_schedule(session: Session, *, now: datetime | None = None, **fields: Any) -> Schedule:
    """Add a schedule; its first due time is the first after `now` (or its creation)."""
    now = now or utcnow()
    cron = CronSchedule.parse(fields["cron"], fields.get("timezone", "UTC"))
    schedule = Schedule(**fields, next_due_at=cron.next_after(now), last_due_at=now, created_at=now)
    session.add(schedule)
    session.flush()
    return schedule


def get_schedule(session: Session, schedule_id: str, *, tenant: str | None = None) -> Schedule:
    """The schedule with that id (of `tenant`, when given)."""
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or (tenant is not None and schedule.tenant != tenant):
        raise ScheduleNotFound(f"no schedule with id {schedule_id}")
    return schedule


def list_schedules(session: Session, *, tenant: str) -> Sequence[Schedule]:
    """A tenant's schedules."""
    return session.scalars(
        select(Schedule).where(Schedule.tenant == tenant).order_by(Schedule.created_at)
    ).all()


def count_schedules(session: Session, *, tenant: str) -> int:
    """How many schedules a tenant has (paused ones too: a paused schedule can be resumed at any time)."""
    return int(
        session.scalar(select(func.count()).select_from(Schedule).where(Schedule.tenant == tenant)) or 0
    )


def list_runs(
    session: Session, schedule_id: str, *, tenant: str | None = None, limit: int = 100
) -> Sequence[ScheduleRun]:
    """What each firing did, newest first."""
    get_schedule(session, schedule_id, tenant=tenant)
    query = (
        select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id).order_by(ScheduleRun.due_at.desc())
    )
    return session.scalars(query.limit(limit)).all()


def decisions_for_model(
    session: Session, model_name: str, *, tenant: str, limit: int = 100
) -> Sequence[tuple[Schedule, ScheduleRun]]:
    """The runs that decided a promotion of `model_name`, newest first, with their schedule."""
    query = (
        select(Schedule, ScheduleRun)
        .join(ScheduleRun, ScheduleRun.schedule_id == Schedule.id)
        .where(Schedule.tenant == tenant, Schedule.model_name == model_name)
        .order_by(ScheduleRun.due_at.desc())
        .limit(limit)
    )
    return [(schedule, run) for schedule, run in session.execute(query).all() if run.decision]


def reschedule(session: Session, schedule: Schedule, now: datetime | None = None) -> None:
    """Recompute the next due time after a change of cron, time zone or a resume."""
    now = now or utcnow()
    schedule.next_due_at = cron_of(schedule).next_after(now)
    schedule.last_due_at = (
        max(schedule.last_due_at or now, now) if not schedule.paused else schedule.last_due_at
    )


def due_schedule_ids(session: Session, now: datetime) -> Sequence[str]:
    """The ids of the unpaused schedules whose next due time is at or before `now`."""
    return session.scalars(
        select(Schedule.id).where(Schedule.paused.is_(False), Schedule.next_due_at <= now)
    ).all()


def fire_schedule(settings: Settings, schedule_id: str, now: datetime, fired_by: str) -> str | None:
    """Record the run of the latest missed due time and (within quota) create its job, in one transaction."""
    try:
        with session_scope(settings.resolved_database_url()) as session:
            schedule = session.get(Schedule, schedule_id)
            if schedule is None or schedule.paused or schedule.next_due_at > now:
                return None
            cron = cron_of(schedule)
            after = schedule.last_due_at or schedule.created_at
            due_at = cron.latest_due(after, now) or schedule.next_due_at
            run = ScheduleRun(schedule_id=schedule.id, due_at=due_at, fired_at=now, fired_by=fired_by)
            session.add(run)
            session.flush()  # the unique (schedule, due time) key: a racing tick fails here
            schedule.last_due_at = due_at
            schedule.next_due_at = cron.next_after(now)
            refused = quota.over_quota(session, schedule.tenant, settings)
            if refused is not None:
                run.outcome, run.decision = "skipped", {"reason": f"over quota: {refused.message}"}
                log.warning("schedule %s: firing for %s skipped, over quota", schedule.id, due_at.isoformat())
                return None
            params = {
                **schedule.train,
                **({"priority": schedule.priority} if schedule.priority else {}),
                "model_name": schedule.model_name,
                "schedule": {"id": schedule.id, "run_id": run.id, "policy": schedule.policy},
            }
            job = jobs.create_job(session, JobKind.TRAIN, params, tenant=schedule.tenant)
            job.notify, job.notify_secret = schedule.notify, schedule.notify_secret  # signs as the schedule
            jobs.add_event(
                session, job.id, "scheduled", f"fired by schedule {schedule.name} for {due_at.isoformat()}"
            )
            run.job_id = job.id
            return job.id
    except IntegrityError:
        log.info("schedule %s: due time already fired by another tick", schedule_id)
        return None


def record_decision(
    session: Session,
    run_id: int,
    outcome: str,
    decision: dict[str, Any] | None,
    sample_job_id: str | None = None,
) -> None:
    """What a scheduled run's training led to: promoted, kept, skipped or failed."""
    run = session.get(ScheduleRun, run_id)
    if run is not None:
        run.outcome, run.decision, run.sample_job_id = outcome, decision, sample_job_id
