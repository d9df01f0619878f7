"""The beat process's Celery app: `synthjobs beat` runs `celery -A synthjobs.broker.beat beat`.

Beat only sends the short `synthjobs.tick` task every `SYNTHJOBS_TICK_INTERVAL` seconds; a worker runs it and
fires whatever schedules are due in SQL. Two beats running at once are harmless: each due time is fired once.
"""

from __future__ import annotations

from synthjobs.broker.queue import TICK_TASK, make_sender, queue_for
from synthjobs.settings import get_settings

settings = get_settings()
app = make_sender(settings)
app.conf.beat_schedule = {
    "tick-schedules": {
        "task": TICK_TASK,
        "schedule": settings.tick_interval,
        "options": {"queue": queue_for(TICK_TASK, settings), "expires": settings.tick_interval * 2},
    }
}
