"""Webhook endpoints and the outbox: the rows the deliverer (`synthjobs.maintenance.webhooks`) sends.

`emit` is called inside the transaction that changes the job or the alias (`ledger.jobs`,
`ledger.registry`), so the event exists exactly when the change does: a crash after the commit and before
the POST leaves a pending row that the next deliverer pass sends.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from synthjobs.errors import SynthJobsError
from synthjobs.ledger.db import execute_dml
from synthjobs.ledger.tables import Job, JobEvent, Schedule, Webhook, WebhookDelivery, new_id, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# What a job's own `notify` may subscribe to, and what it hears when it names no events.
JOB_EVENT_TYPES = ("job.succeeded", "job.failed", "job.cancelled")
MAX_WEBHOOKS_PER_TENANT = 50
PUBLIC_JOB_FIELDS = ("id", "kind", "state", "phase", "progress", "error", "error_code", "priority", "result")
JOB_TIMES = ("created_at", "started_at", "finished_at")


class WebhookNotFound(SynthJobsError):
    """No webhook with that id in the caller's tenant."""


def create_webhook(
    session: Session, tenant: str, url: str, event_types: Sequence[str], description: str = ""
) -> Webhook:
    """Register an endpoint; its secret (`whsec_...`) is on the returned row, to be shown once."""
    row = Webhook(
        id=new_id(),
        tenant=tenant,
        url=url,
        event_types=sorted(set(event_types)),
        secret=new_secret(),
        description=description,
    )
    session.add(row)
    session.flush()
    return row


def new_secret() -> str:
    """A signing secret (`whsec_...`), for an endpoint, a job's or a schedule's `notify`."""
    return "whsec_" + secrets.token_urlsafe(32)


def notify_spec(url: str, events: Sequence[str] | None) -> dict[str, Any]:
    """The stored form of a `notify`: its URL and events (the job's terminal events when none are named)."""
    return {"url": url, "events": sorted(set(events or JOB_EVENT_TYPES))}


def notify_columns(url: str, events: Sequence[str] | None) -> dict[str, Any]:
    """A new job's or schedule's `notify` and a fresh secret, as column values (the secret is shown once)."""
    return {"notify": notify_spec(url, events), "notify_secret": new_secret()}


def attach_notify(target: Job | Schedule, url: str, events: Sequence[str] | None) -> str:
    """Give a new job or schedule its `notify` and a fresh secret; return the secret, to be shown once."""
    for name, value in notify_columns(url, events).items():
        setattr(target, name, value)
    assert target.notify_secret is not None
    return target.notify_secret


def count_webhooks(session: Session, tenant: str) -> int:
    """How many endpoints `tenant` has registered."""
    return len(session.scalars(select(Webhook.id).where(Webhook.tenant == tenant)).all())


def get_webhook(session: Session, webhook_id: str, *, tenant: str) -> Webhook:
    """The tenant's webhook; WebhookNotFound for another tenant's or a missing one."""
    row = session.get(Webhook, webhook_id)
    if row is None or row.tenant != tenant:
        raise WebhookNotFound(f"no webhook with id {webhook_id}")
    return row


def list_webhooks(session: Session, *, tenant: str) -> Sequence[Webhook]:
    """The tenant's endpoints, oldest first."""
    query = select(Webhook).where(Webhook.tenant == tenant).order_by(Webhook.created_at, Webhook.id)
    return session.scalars(query).all()


def delete_webhook(session: Session, webhook_id: str, *, tenant: str) -> None:
    """Remove an endpoint and its pending deliveries."""
    row = get_webhook(session, webhook_id, tenant=tenant)
    session.query(WebhookDelivery).filter(WebhookDelivery.webhook_id == row.id).delete()
    session.delete(row)


def list_deliveries(
    session: Session, webhook_id: str, *, tenant: str, limit: int = 100
) -> Sequence[WebhookDelivery]:
    """The endpoint's deliveries, newest first."""
    get_webhook(session, webhook_id, tenant=tenant)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def job_public_fields(job: Job) -> dict[str, Any]:
    """What an event says about a job: the fields the API shows, never its params or worker."""
    data: dict[str, Any] = {name: getattr(job, name) for name in PUBLIC_JOB_FIELDS}
    data.update({name: _iso(getattr(job, name)) for name in JOB_TIMES})
    return data


def emit(
    session: Session, tenant: str, event_type: str, data: dict[str, Any], job_id: str | None = None
) -> str:
    """Write one outbox row per endpoint of `tenant` subscribed to `event_type`, and one for the job's own
    `notify` when it names `event_type`; return the event id.

    Runs in the caller's transaction. Every row of one event carries the same id and the same body.
    """
    event_id = new_id()
    targets: list[tuple[str | None, str]] = [
        (h.id, h.url) for h in list_webhooks(session, tenant=tenant) if event_type in h.event_types
    ]
    job = session.get(Job, job_id) if job_id is not None else None
    if job is not None and job.tenant == tenant and job.notify and event_type in job.notify["events"]:
        targets.append((None, job.notify["url"]))
    if not targets:
        return event_id
    created = utcnow()
    body = json.dumps(
        {"id": event_id, "type": event_type, "created": int(created.timestamp()), "data": data},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    for webhook_id, url in targets:
        session.add(
            WebhookDelivery(
                event_id=event_id,
                tenant=tenant,
                event_type=event_type,
                webhook_id=webhook_id,
                job_id=job_id,
                url=url,
                body=body,
                state=PENDING,
                attempts=0,
                created_at=created,
                next_attempt_at=created,
            )
        )
    return event_id


def emit_job_event(session: Session, job_id: str) -> None:
    """Emit `job.<state>` for a job that just reached a terminal state (in the same transaction)."""
    session.flush()
    job = session.get(Job, job_id, populate_existing=True)
    if job is not None:
        emit(session, job.tenant, f"job.{job.state.lower()}", job_public_fields(job), job_id=job.id)


def due_deliveries(session: Session, now: datetime, limit: int = 100) -> Sequence[WebhookDelivery]:
    """Pending deliveries whose next attempt is due, oldest first."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.state == PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    return session.scalars(query).all()


@dataclass(frozen=True)
class DueDelivery:
    """What the deliverer needs to send one outbox row: no ORM object crosses the transaction."""

    id: str
    url: str
    body: bytes
    secret: str


def claim_due(session: Session, now: datetime, lease: datetime, limit: int = 100) -> list[DueDelivery]:
    """Take every due delivery for one attempt (see `take_attempt`), with the secret that signs it: its
    endpoint's, or (a row without an endpoint) its job's `notify` secret."""
    taken = []
    for row in due_deliveries(session, now, limit):
        secret = delivery_secret(session, row)
        if secret is not None and take_attempt(session, row, now, lease):
            taken.append(DueDelivery(row.id, row.url, row.body.encode(), secret))
    return taken


def delivery_secret(session: Session, row: WebhookDelivery) -> str | None:
    """The secret signing `row`, or None when its endpoint or job is gone (or is another tenant's)."""
    if row.webhook_id is not None:
        hook = session.get(Webhook, row.webhook_id)
        return hook.secret if hook is not None and hook.tenant == row.tenant else None
    job = session.get(Job, row.job_id) if row.job_id is not None else None
    if job is None or job.tenant != row.tenant:
        return None
    return job.notify_secret


def record_attempt(
    session: Session,
    delivery_id: str,
    status: int | None,
    error: str | None,
    *,
    retry_window: timedelta,
    next_delay: Callable[[int], float],
    now: datetime | None = None,
) -> WebhookDelivery | None:
    """Record one try: delivered on a 2xx, else retried after `next_delay(attempts)` seconds until
    `retry_window` (counted from the event) is over.

    The attempt is also an event on the job it reports, so the job's history shows every try.
    """
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:  # the endpoint was deleted meanwhile
        return None
    now = now or utcnow()
    ok = status is not None and 200 <= status < 300
    row.attempts += 1
    row.last_status, row.last_error = status, (error or None) and error[:500]
    if ok:
        row.state, row.delivered_at = DELIVERED, now
    elif now - row.created_at > retry_window:
        row.state = FAILED
    else:
        row.next_attempt_at = now + timedelta(seconds=next_delay(row.attempts))
    if row.job_id is not None and session.get(Job, row.job_id) is not None:
        outcome = f"HTTP {status}" if status is not None else error
        message = f"webhook {row.event_type} to {row.url}: {outcome} (attempt {row.attempts}, {row.state})"
        data = {
            "event_id": row.event_id,
            "webhook_id": row.webhook_id,
            "notify": row.webhook_id is None,
            "status": status,
            "attempt": row.attempts,
            "state": row.state,
        }
        session.add(JobEvent(job_id=row.job_id, kind="webhook", message=message[:2000], data=data))
    return row


def take_attempt(session: Session, delivery: WebhookDelivery, now: datetime, lease: datetime) -> bool:
    """Claim `delivery` for one attempt by pushing its due time to `lease`; False when another took it.

    Two deliverers (two workers' reconcilers) then never POST the same row at once.
    """
    claimed = execute_dml(
        session,
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.id,
            WebhookDelivery.state == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=lease)
        .execution_options(synchronize_session=False),
    )
    return claimed == 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
