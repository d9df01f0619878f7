"""The one submit path every job kind takes: replay → quota → plan → create → commit → remember → enqueue.

Each route validates its own body and passes `build`, which turns it into the job's params; everything
else — an Idempotency-Key replay (200), the rate and in-flight quota (429), the storage quota (413/429),
creating the row (and a sharded kind's shards), committing it with its idempotency record before any
message names it, and publishing the job's task or releasing its first shards (`broker.dispatch`) —
is here, read from the kind's `KindSpec` (`synthjobs.rules.kinds`), never from its name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from celery import Celery
from fastapi import Depends, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import (
    IdempotencyDep,
    IdempotencyRequest,
    QuotaDep,
    SenderDep,
    SessionDep,
    SettingsDep,
    TenantDep,
)
from api.errors import field_error
from api.quota import QuotaGuard
from api.schemas import JobOut, NotifyIn
from synthjobs.broker.dispatch import dispatch_shards
from synthjobs.broker.queue import enqueue_job
from synthjobs.errors import InvalidRequest
from synthjobs.ledger import jobs
from synthjobs.ledger.shards import create_sampling_job
from synthjobs.ledger.tables import Job, JobState, utcnow
from synthjobs.ledger.webhooks import notify_columns
from synthjobs.maintenance.webhooks import destination_problem
from synthjobs.rules.kinds import get_kind
from synthjobs.settings import Settings

# Turns the validated request into the job's params; InvalidRequest (→ 422 at its field) or an
# HTTPException for a request this deployment refuses.
Build = Callable[[], dict[str, Any]]


@dataclass
class Submission:
    """What a submit route has at hand: its request's dependencies."""

    session: Session
    sender: Celery
    settings: Settings
    tenant: str
    idem: IdempotencyRequest
    quota: QuotaGuard
    response: Response


async def get_submission(
    response: Response,
    session: SessionDep,
    sender: SenderDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idem: IdempotencyDep,
    quota: QuotaDep,
) -> Submission:
    """Gather a submit route's dependencies once, so each route lists only its body and `SubmissionDep`.

    `async` (it only gathers): a sync dependency would cost a thread-pool hop of its own.
    """
    return Submission(session, sender, settings, tenant, idem, quota, response)


SubmissionDep = Annotated[Submission, Depends(get_submission)]


def submit(kind: str, build: Build, at: Submission, notify: NotifyIn | None = None) -> JobOut:
    """Create and publish a job of `kind` whose params `build` makes; 202, or 200 for a replayed key.

    A `notify` is checked like a webhook endpoint (422 at `notify.url`); its secret is in this response only.
    """
    spec = get_kind(kind)
    if (earlier := replayed(at)) is not None:
        return earlier
    check_notify(notify, at.settings)
    at.quota.check(at.session, at.tenant)
    if not spec.plans_output:
        at.quota.check_storage(at.session, at.tenant)
    try:
        params = build()
    except InvalidRequest as exc:
        raise HTTPException(422, field_error(exc.loc, str(exc), exc.kind)) from exc
    if spec.plans_output:
        at.quota.check_storage(at.session, at.tenant, int(params["planned_bytes"]))
    columns = notify_columns(notify.url, notify.events) if notify is not None else {}
    if spec.sharded:
        job, _ = create_sampling_job(at.session, params, tenant=at.tenant, kind=kind)
        for name, value in columns.items():
            setattr(job, name, value)
    else:  # with its event and its notify, one statement
        job = jobs.insert_job(at.session, kind, params, tenant=at.tenant, columns=columns)
    secret = columns.get("notify_secret")
    if (earlier := _commit(at, job.id)) is not None:
        return earlier
    at.quota.record(at.tenant, int(job.reserved_bytes or 0))
    if spec.sharded:
        dispatch_shards(at.sender, at.settings)  # its first shards, if the window has room
    else:
        enqueue_job(at.sender, job.id, kind, at.settings)
    out = job_out(job)
    if out.notify is not None:
        out.notify.secret = secret
    return out


def check_notify(notify: NotifyIn | None, settings: Settings) -> None:
    """422 at `notify.url` for a URL a webhook endpoint could not have (scheme, credentials, address)."""
    if notify is not None and (problem := destination_problem(notify.url, settings)) is not None:
        raise HTTPException(422, field_error(("notify", "url"), problem))


def replayed(at: Submission) -> JobOut | None:
    """The job an earlier request with this Idempotency-Key created (answered 200), or None."""
    earlier = at.idem.replay(at.session, at.tenant)
    if earlier is None:
        return None
    at.response.status_code = status.HTTP_200_OK
    return job_out(jobs.get_job(at.session, earlier))


def _commit(at: Submission, job_id: str) -> JobOut | None:
    """Commit the new job with its idempotency record (the row exists before any message names it).

    Returns the twin request's job when a concurrent request with the same key committed first.
    """
    try:
        at.idem.remember(at.session, at.tenant, "job", job_id)
        at.session.commit()
        return None
    except IntegrityError:
        at.session.rollback()
        earlier = replayed(at)
        if earlier is None:
            raise
        return earlier


def job_out(job: Job) -> JobOut:
    """The API's view of a job, with an ETA from its pace so far while it runs."""
    out = JobOut.model_validate(job)
    if job.state == JobState.RUNNING.value and job.started_at is not None and 0.02 < job.progress < 1:
        elapsed = (utcnow() - job.started_at).total_seconds()
        out.eta_seconds = round(elapsed * (1 - job.progress) / job.progress, 1)
    return out
