"""Scheduled retraining: schedules live in SQL, so adding one needs no restart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError

from api.deps import SessionDep, SettingsDep, TenantDep
from api.errors import field_error
from api.routes.jobs import train_params
from api.schemas import ScheduleOut, SchedulePatch, ScheduleRequest, ScheduleRunOut
from api.submit import check_notify
from synthjobs.ledger import schedules
from synthjobs.ledger.tables import Schedule
from synthjobs.ledger.webhooks import attach_notify
from synthjobs.rules.cron import CronError, CronSchedule

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such schedule."}}
TRAIN_NOTIFY = "set notify on the schedule (it applies to every run), not on its train"


def _check_cron(cron: str, timezone: str) -> None:
    try:
        CronSchedule.parse(cron, timezone)
    except CronError as exc:
        field = "timezone" if exc.field == "time zone" else "cron"
        raise HTTPException(422, field_error((field,), str(exc))) from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleOut,
    responses={
        409: {
            "description": "The tenant has a schedule of that name, or already has as many schedules as "
            "this deployment allows (`max_schedules_per_tenant`): delete one first."
        }
    },
)
def create_schedule(
    body: ScheduleRequest, session: SessionDep, settings: SettingsDep, tenant: TenantDep
) -> ScheduleOut:
    """Create a schedule; its first run is at the first due time from now. A `notify`'s secret, which
    signs the events of every job the schedule starts, is in this response only."""
    _check_cron(body.cron, body.timezone)
    if body.train.notify is not None:
        raise HTTPException(
            422, field_error(("train", "notify"), "set notify on the schedule, not its train")
        )
    check_notify(body.notify, settings)
    if session.query(Schedule).filter_by(tenant=tenant, name=body.name).first() is not None:
        raise HTTPException(409, f"a schedule named {body.name!r} exists")
    if (count := schedules.count_schedules(session, tenant=tenant)) >= settings.max_schedules_per_tenant:
        limit = settings.max_schedules_per_tenant
        message = f"the tenant has {count} schedules and the limit is {limit}; delete one to add another"
        raise HTTPException(409, message)
    schedule = schedules.add_schedule(
        session,
        tenant=tenant,
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        model_name=body.model_name,
        train=train_params(body.train, session, settings, tenant),
        sample=body.sample.model_dump() if body.sample else None,
        policy=body.policy.model_dump(),
        priority=body.priority,
    )
    secret = attach_notify(schedule, body.notify.url, body.notify.events) if body.notify else None
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create took the name between the check and the insert
        session.rollback()
        raise HTTPException(409, f"a schedule named {body.name!r} exists") from exc
    out = ScheduleOut.model_validate(schedule)
    if out.notify is not None:
        out.notify.secret = secret
    return out


@router.get("", response_model=list[ScheduleOut])
def list_schedules(session: SessionDep, tenant: TenantDep) -> list[Schedule]:
    """List the tenant's schedules."""
    return list(schedules.list_schedules(session, tenant=tenant))


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=NOT_FOUND)
def get_schedule(schedule_id: str, session: SessionDep, tenant: TenantDep) -> Schedule:
    """Read one schedule with its next due time."""
    return schedules.get_schedule(session, schedule_id, tenant=tenant)


@router.patch("/{schedule_id}", response_model=ScheduleOut, responses=NOT_FOUND)
def update_schedule(
    schedule_id: str, body: SchedulePatch, session: SessionDep, settings: SettingsDep, tenant: TenantDep
) -> Schedule:
    """Pause, resume, or change the cron, training spec, policy or follow-up of a schedule."""
    schedule = schedules.get_schedule(session, schedule_id, tenant=tenant)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    _check_cron(changes.get("cron", schedule.cron), changes.get("timezone", schedule.timezone))
    if body.train is not None:
        if body.train.notify is not None:
            raise HTTPException(422, field_error(("train", "notify"), TRAIN_NOTIFY))
        schedule.train = train_params(body.train, session, settings, tenant)
    for field in ("cron", "timezone", "paused", "policy", "sample", "priority"):
        if field in changes:
            setattr(schedule, field, changes[field])
    if {"cron", "timezone", "paused"} & changes.keys():
        schedules.reschedule(session, schedule)
    session.commit()
    return schedule


@router.delete("/{schedule_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_schedule(schedule_id: str, session: SessionDep, tenant: TenantDep) -> Response:
    """Delete a schedule and its run history (jobs and models it made stay)."""
    session.delete(schedules.get_schedule(session, schedule_id, tenant=tenant))
    session.commit()
    return Response(status_code=204)


@router.get("/{schedule_id}/runs", response_model=list[ScheduleRunOut], responses=NOT_FOUND)
def list_schedule_runs(schedule_id: str, session: SessionDep, tenant: TenantDep) -> list[Any]:
    """What each firing did, newest first: its job, and promoted / kept / skipped with the figures."""
    return list(schedules.list_runs(session, schedule_id, tenant=tenant))
