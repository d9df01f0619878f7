"""The schedule tick: fire every due schedule, then publish the training jobs it created.

Run by `synthjobs beat` through a periodic task, or by `synthjobs tick`. Each firing is its own transaction
(`ledger.schedules.fire_schedule`); the job is published only after it committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from synthjobs.broker.queue import enqueue_job
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.schedules import due_schedule_ids, fire_schedule
from synthjobs.ledger.tables import utcnow
from synthjobs.rules import kinds
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from celery import Celery


def tick(
    settings: Settings, sender: Celery, *, now: datetime | None = None, fired_by: str = "tick"
) -> list[str]:
    """Fire every schedule that is due at `now`; return the ids of the training jobs created."""
    now = now or utcnow()
    url = settings.resolved_database_url()
    with session_scope(url) as session:
        due = due_schedule_ids(session, now)
    created = []
    for schedule_id in due:
        job_id = fire_schedule(settings, schedule_id, now, fired_by)
        if job_id is not None:
            enqueue_job(sender, job_id, kinds.TRAIN.name, settings)
            created.append(job_id)
    return created
