"""The SQL ledger: jobs, their events, and trained models (SQLAlchemy 2 typed ORM).

The same schema runs on SQLite and PostgreSQL; Alembic migrations under `synthjobs/migrations` create it.
Ids are UUID strings so they read the same in URLs, logs and object keys on every database.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

DEFAULT_TENANT = "default"
TENANT = String(100)


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp in the ledger is UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random UUID string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back timezone-aware in UTC on SQLite too (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class JobKind(enum.StrEnum):
    """The built-in job kinds' names. What each kind is, and any a plugin adds, is `synthjobs.rules.kinds`;
    the column stores the name as text, so a plugin kind needs no migration."""

    TRAIN = "train"
    SAMPLE = "sample"


class JobState(enum.StrEnum):
    """Where a job is in its life: QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Job(Base):
    """One unit of work a user submitted; the only record of its state (the broker just carries ids)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_state_created", "state", "created_at"),
        Index("ix_jobs_tenant_created", "tenant", "created_at"),
        Index("ix_jobs_tenant_state", "tenant", "state"),
        Index("ix_jobs_deleted_finished", "deleted_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(TENANT, default=DEFAULT_TENANT)
    kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    phase: Mapped[str] = mapped_column(String(200), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # Why it failed, for programs (`internal_error`, `dataset_error`, ...); `error` says it for people.
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    finalizer: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Deletion keeps the row (its history, its tenant's audit trail); these say its outputs are gone or going.
    delete_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bytes the job stores besides its shards (checkpoints, model artifacts, manifest): the storage quota
    # adds these to the shards' own `bytes`, so usage is summed in SQL, never by listing storage.
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # A queued or running sampling job's planned output: counted against the quota until the job ends, so
    # ten submissions in a row cannot each fit the room that only one of them will find.
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # low | normal | high (`rules.fair_share`): orders the release of a tenant's sampling shards.
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    # Where to POST this job's events (`{"url": ..., "events": [...]}`), from its submit or its schedule;
    # the secret signs them and is never shown after the submit's response.
    notify: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    notify_secret: Mapped[str | None] = mapped_column(String(500), default=None)


class JobEvent(Base):
    """Something that happened to a job: a claim, an epoch, an upload, a failure."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Model(Base):
    """A trained CVAE: a version under a name, its checkpoint in storage and what it measured."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("tenant", "name", "version", name="uq_models_tenant_name_version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    training_job_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("jobs.id"), default=None)
    checkpoint_uri: Mapped[str] = mapped_column(Text)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dataset: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    """A movable name for one version of a model (`digits-cvae@champion`)."""

    __tablename__ = "model_aliases"

    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(36), ForeignKey("models.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AliasEvent(Base):
    """One move of an alias: from which model to which, by whom and why (None = unset)."""

    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_tenant_name_alias", "tenant", "name", "alias", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(100))
    alias: Mapped[str] = mapped_column(String(64))
    from_model_id: Mapped[str | None] = mapped_column(String(36), default=None)
    to_model_id: Mapped[str | None] = mapped_column(String(36), default=None)
    actor: Mapped[str] = mapped_column(String(200), default="api")
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """An `.npz` dataset uploaded through the API, stored under `datasets/{id}/`."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(TENANT, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(200))
    uri: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_images: Mapped[int] = mapped_column(Integer)
    image_shape: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ShardState(enum.StrEnum):
    """Where one shard of a sampling job is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"


class JobShard(Base):
    """One shard of a sampling job: its own task, its own deterministic key, tracked here, not by Celery."""

    __tablename__ = "job_shards"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=ShardState.PENDING.value)
    count: Mapped[int] = mapped_column(Integer)
    per_class: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    key: Mapped[str | None] = mapped_column(Text, default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # Set when the dispatcher published it (`ledger.dispatch`); NULL shards wait in SQL for a free slot.
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    # Its first claim by a worker: released_at -> claimed_at is the shard's wait in the broker (metrics).
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # The dispatcher's backlog query reads only undone shards (migration 0011): its cost follows the live
    # backlog, not every shard ever written.
    __table_args__ = (
        Index(
            "ix_job_shards_undone",
            "job_id",
            "released_at",
            "state",
            postgresql_where=text("state IN ('PENDING', 'RUNNING')"),
            sqlite_where=text("state IN ('PENDING', 'RUNNING')"),
        ),
    )


class Schedule(Base):
    """Retrain `model_name` on a cron schedule; the training spec is stored as validated job params."""

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_schedules_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(TENANT, default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(100))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    model_name: Mapped[str] = mapped_column(String(100))
    train: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sample: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    policy: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The priority (`rules.fair_share`) of the jobs it creates, training and follow-up sampling alike;
    # None: the training spec's own.
    priority: Mapped[str | None] = mapped_column(String(8), default=None)
    paused: Mapped[bool] = mapped_column(default=False)
    # Copied, secret included, to every job the schedule starts (`ledger.schedules.fire_schedule`).
    notify: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    notify_secret: Mapped[str | None] = mapped_column(String(500), default=None)
    next_due_at: Mapped[datetime] = mapped_column()
    last_due_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ScheduleRun(Base):
    """One firing of a schedule; (schedule, due time) is unique, so a due time fires at most once."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at", name="uq_schedule_runs_due"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("schedules.id", ondelete="CASCADE"), index=True
    )
    due_at: Mapped[datetime] = mapped_column()
    fired_at: Mapped[datetime] = mapped_column(default=utcnow)
    fired_by: Mapped[str] = mapped_column(String(200), default="")
    job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    outcome: Mapped[str] = mapped_column(String(32), default="training")
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    sample_job_id: Mapped[str | None] = mapped_column(String(36), default=None)


class ApiToken(Base):
    """A bearer token of one tenant; only its sha256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(TENANT, index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class IdempotencyKey(Base):
    """A POST that created something, by (tenant, Idempotency-Key): a retry returns the original."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Webhook(Base):
    """An endpoint a tenant registered for some event types; its secret signs every delivery to it."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant: Mapped[str] = mapped_column(TENANT, index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one event for one destination, written in the transaction of the change it reports.

    `event_id` is the event's id (the same for every destination and every retry: receivers dedup on it);
    `body` is frozen at creation so a retry sends the same bytes. The deliverer moves `state` from pending
    to delivered or failed (given up once `created_at` is older than the retry window).
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    event_type: Mapped[str] = mapped_column(String(32))
    webhook_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("webhooks.id", ondelete="CASCADE"), index=True, default=None
    )
    job_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
