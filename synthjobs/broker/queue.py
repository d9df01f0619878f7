"""Task names, payload shapes and Celery configuration shared by the API (sender) and the worker.

The API enqueues by name (`send_task`) and never imports the worker or torch. A message carries only the
job id: everything else is read from SQL, which stays the ledger even if a message is lost.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from synthjobs.rules.kinds import job_task, kinds
from synthjobs.settings import Settings

log = logging.getLogger(__name__)

TRAIN_TASK = "synthjobs.train"
SAMPLE_SHARD_TASK = "synthjobs.sample_shard"
FINALIZE_TASK = "synthjobs.finalize_sample"
TICK_TASK = "synthjobs.tick"
ALL_TASKS = (TRAIN_TASK, SAMPLE_SHARD_TASK, FINALIZE_TASK, TICK_TASK)
# How often an idle worker on the embedded (SQLite) broker looks for a message: one indexed SELECT per poll.
EMBEDDED_POLL_SECONDS = 0.1


def all_tasks() -> list[str]:
    """Every task name this service publishes: the fixed ones plus each registered kind's (plugins too)."""
    return list(dict.fromkeys([*ALL_TASKS, *(spec.task for spec in kinds())]))


# Lanes: job-level work (training and other whole-job kinds, the schedule tick) and sharded work (sampling
# shards and their finalizer) travel on separate queues, `<queue>` and `<queue>.sample`, so a deployment
# can dedicate workers to each (`synthjobs worker --queues train`). The train lane keeps the plain queue
# name, so messages published before lanes existed are still consumed after an upgrade. A worker consuming
# both (the default) takes from them in turn (kombu's Redis transport rotates the queues it pops from), so a
# training job never waits behind the released window of a big sampling job.
TRAIN_LANE = "train"
SAMPLE_LANE = "sample"
LANES = (TRAIN_LANE, SAMPLE_LANE)


def lane_of(task: str) -> str:
    """The lane of `task`: a sharded kind's shard task and the finalizer on `sample`, the rest on `train`."""
    if task == FINALIZE_TASK or any(spec.sharded and spec.task == task for spec in kinds()):
        return SAMPLE_LANE
    return TRAIN_LANE


def lane_queue(settings: Settings, lane: str) -> str:
    """The broker queue of `lane` in this deployment: `<SYNTHJOBS_QUEUE>` for train, `<...>.sample`."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}; lanes are {', '.join(LANES)}")
    return settings.queue if lane == TRAIN_LANE else f"{settings.queue}.{lane}"


def queue_for(task: str, settings: Settings) -> str:
    """The queue every publisher (API, dispatcher, reconciler, beat) sends `task` to: one routing rule."""
    return lane_queue(settings, lane_of(task))


def parse_lanes(text: str) -> list[str]:
    """`train,sample` -> the lanes named (ValueError for an unknown or empty list), in the order given."""
    lanes = [part.strip() for part in text.split(",") if part.strip()]
    if not lanes:
        raise ValueError(f"no lanes named; lanes are {', '.join(LANES)}")
    for lane in lanes:
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}; lanes are {', '.join(LANES)}")
    return list(dict.fromkeys(lanes))


def all_queues(settings: Settings) -> list[str]:
    """Every broker queue of this deployment (queue-depth metrics read them all)."""
    return [lane_queue(settings, lane) for lane in LANES]


def task_payload(job_id: str) -> dict[str, Any]:
    """The keyword arguments of every job task: the id and nothing else (no secrets in Redis or logs)."""
    return {"job_id": job_id}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings both sides use; see README "Reliability" for why each is set."""
    broker_url = settings.resolved_broker_url()
    transport_options: dict[str, Any] = {}
    redis = broker_url.startswith(("redis://", "rediss://"))
    if redis:
        # Redis redelivers an unacked (late-ack) task after this many seconds: it must exceed the longest job.
        transport_options["visibility_timeout"] = settings.visibility_timeout
        transport_options["socket_connect_timeout"] = settings.enqueue_timeout
        # Bounds how long a publish can block on a stalled Redis (the API answers within ~2x this).
        transport_options["socket_timeout"] = settings.enqueue_timeout + 2.0
    elif broker_url.startswith(("sqla+", "sqlalchemy+")):
        poll_embedded_broker_faster()
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.enqueue_timeout,
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "task_default_queue": lane_queue(settings, TRAIN_LANE),
        "task_routes": {name: {"queue": queue_for(name, settings)} for name in all_tasks()},
        "task_serializer": "json",
        "accept_content": ["json"],
        # Task events feed Flower; only on Redis (the embedded SQLite broker has no fanout for them).
        "worker_send_task_events": redis,
        "task_send_sent_event": redis,
        "enable_utc": True,
    }


def poll_embedded_broker_faster() -> None:
    """Make kombu's SQL transport poll its table every EMBEDDED_POLL_SECONDS instead of every 1 s.

    Its 1 s default made every job's first claim wait ~1 s. The usual `polling_interval` transport option
    cannot be used: this transport hands every transport option to `create_engine`, which refuses it.
    """
    from kombu.transport.sqlalchemy import Transport

    Transport.polling_interval = EMBEDDED_POLL_SECONDS


def make_sender(settings: Settings) -> Celery:
    """A Celery app used only to publish tasks by name (the API's side)."""
    app = Celery("synthjobs-sender")
    app.conf.update(celery_config(settings))
    return app


def enqueue_shards(
    app: Celery, job_id: str, indexes: list[int], settings: Settings, countdown: float | None = None
) -> bool:
    """Publish one task per shard of a sampling job over one connection; False when the broker failed.

    Shards not published stay PENDING in SQL; the reconciler publishes them again.
    """
    try:
        with app.producer_or_acquire() as producer:
            for index in indexes:
                app.send_task(
                    SAMPLE_SHARD_TASK,
                    kwargs={"job_id": job_id, "shard": index},
                    queue=queue_for(SAMPLE_SHARD_TASK, settings),
                    producer=producer,
                    countdown=countdown,
                    retry=True,
                    retry_policy={
                        "max_retries": 1,
                        "interval_start": 0.2,
                        "interval_step": 0.5,
                        "interval_max": 1,
                    },
                )
        return True
    except Exception:  # noqa: BLE001 - shards stay PENDING for the reconciler
        log.exception("could not enqueue the shards of job %s; they stay PENDING", job_id)
        return False


def enqueue_job(app: Celery, job_id: str, kind: str, settings: Settings) -> bool:
    """Publish a job-level job's task (its kind's, from `rules.kinds`); False (logged) on a broker failure.

    The job row is already committed as QUEUED, so a failed publish loses nothing: the reconciler
    publishes queued jobs whose message never arrived again. Sharded kinds publish their shards instead
    (ValueError here).
    """
    return _send(app, job_task(kind), task_payload(job_id), settings, job_id)


def enqueue_finalizer(app: Celery, job_id: str, settings: Settings) -> bool:
    """Ask a worker to finalize a sampling job whose shards are done (the reconciler's repair)."""
    return _send(app, FINALIZE_TASK, task_payload(job_id), settings, job_id)


def _send(app: Celery, task: str, kwargs: dict[str, Any], settings: Settings, job_id: str) -> bool:
    try:
        app.send_task(
            task,
            kwargs=kwargs,
            queue=queue_for(task, settings),
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        )
        return True
    except Exception:  # noqa: BLE001 - any broker failure leaves the job QUEUED for the reconciler
        log.exception("could not enqueue %s for job %s; SQL still holds it", task, job_id)
        return False
