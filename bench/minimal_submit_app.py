"""The floor `bench/api_submit.py` compares the real API with: one FastAPI route that does only the work a
submission cannot avoid, one INSERT into the same `jobs` table and one Celery publish by task name.

No schema, limits, dataset checks, event row or response model: the body is parsed as a JSON object and
stored as the job's params, and the answer is the new id. It reads the same `SYNTHJOBS_*` variables as the
API (database, broker, queue) and uses the same engine pool and Celery settings, so only the route differs.

    uvicorn minimal_submit_app:create_app --factory --app-dir bench --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, status
from sqlalchemy import insert

from synthjobs.broker.queue import TRAIN_TASK, make_sender, task_payload
from synthjobs.ledger.db import get_engine
from synthjobs.ledger.tables import Job, JobKind, JobState, new_id, utcnow
from synthjobs.settings import get_settings

JOBS = Job.__table__
TENANT = "bench-minimal"  # its own tenant (where the schema has tenants), so its rows never count in the real
# API's per-tenant quota queries


def create_app() -> FastAPI:
    """The minimal submit app for the settings in the environment."""
    settings = get_settings()
    engine = get_engine(settings.resolved_database_url())
    sender = make_sender(settings)
    app = FastAPI(title="minimal submit")

    @app.post("/v1/jobs/train", status_code=status.HTTP_202_ACCEPTED)
    def submit_train(body: dict[str, Any]) -> dict[str, str]:
        """Insert a QUEUED train job, commit, publish its id."""
        job_id, now = new_id(), utcnow()
        row = {
            "id": job_id,
            "kind": JobKind.TRAIN.value,
            "state": JobState.QUEUED.value,
            "params": body,
            "phase": "queued",
            "progress": 0.0,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        if "tenant" in JOBS.c:
            row["tenant"] = TENANT
        with engine.begin() as connection:
            connection.execute(insert(JOBS), row)
        sender.send_task(TRAIN_TASK, kwargs=task_payload(job_id), queue=settings.queue)
        return {"id": job_id, "state": JobState.QUEUED.value}

    return app
