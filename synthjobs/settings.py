"""One settings object for every process, read from `SYNTHJOBS_*` environment variables.

With no configuration at all the service runs on one machine: SQLite for jobs, kombu's SQLAlchemy
transport on a second SQLite file as the broker, and a local folder as storage, all under
`SYNTHJOBS_HOME` (default `./.synthjobs`). Production sets the three URLs to PostgreSQL, Redis and S3.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service. Field names map to `SYNTHJOBS_<NAME>` variables."""

    model_config = SettingsConfigDict(env_prefix="SYNTHJOBS_", extra="ignore")

    home: Path = Field(default=Path(".synthjobs"), description="Root of the embedded default's files.")
    # URLs can carry passwords: kept as SecretStr so they never show in a repr, a log line or an error page.
    database_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL; default SQLite under home."
    )
    broker_url: SecretStr | None = Field(
        default=None, description="Celery broker; default SQLite under home."
    )
    storage_url: str | None = Field(default=None, description="s3://bucket/prefix or file:///path.")
    s3_endpoint_url: str | None = Field(default=None, description="MinIO or any S3-compatible endpoint.")
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    api_url: str = "http://127.0.0.1:8000"
    api_token: SecretStr | None = Field(default=None, description="Bearer token the CLI and client send.")
    admin_token: SecretStr | None = Field(default=None, description="Bootstrap token accepted by the API.")
    admin_tenant: str = Field(default="default", description="Tenant the admin token acts as.")
    token_cache_seconds: float = Field(default=30, ge=0, description="How long a verified token is trusted.")
    max_concurrent_jobs: int = Field(default=1000, ge=1, description="Queued + running jobs per tenant.")
    max_submits_per_minute: int = Field(
        default=1200, ge=1, description="Job submissions per tenant per minute."
    )
    max_schedules_per_tenant: int = Field(
        default=100,
        ge=0,
        le=100_000,
        description="Schedules one tenant may have (paused ones count; 0: none); creating one more is a 409.",
    )
    idempotency_hours: float = Field(default=48, ge=24, description="How long Idempotency-Keys are kept.")
    signing_key: SecretStr | None = Field(
        default=None, description="Signs download URLs the API streams itself; default: the admin token."
    )
    presign_seconds: int = Field(
        default=300, ge=1, le=7 * 24 * 3600, description="Lifetime of download URLs."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    queue: str = Field(default="gpu", description="Celery queue for training and sampling tasks.")
    device: str = Field(default="auto", description="auto (CUDA when present), cuda, cuda:N or cpu.")
    worker_processes: int = Field(default=1, ge=1, description="Worker processes sharing this machine.")
    torch_threads: int | None = Field(default=None, ge=1, description="Default: (cores - 1) / processes.")
    visibility_timeout: int = Field(
        default=12 * 3600, ge=60, description="Seconds before Redis redelivers an unacked task."
    )
    enqueue_timeout: float = Field(default=3.0, gt=0, description="Seconds the API waits for the broker.")
    progress_interval: float = Field(default=0.5, ge=0, description="Min seconds between progress writes.")
    lease_seconds: float = Field(default=60, gt=0, description="A running job's lease, renewed every third.")
    max_attempts: int = Field(default=5, ge=1, description="Runs of a job before 'worker lost N times'.")
    max_runtime_seconds: int = Field(
        default=24 * 3600,
        ge=1,
        le=366 * 24 * 3600,
        description="Per-job runtime limit: the default, and the most a request may ask for (422 above).",
    )
    reconcile_interval: float = Field(
        default=30, ge=0, description="Seconds between reconciler passes; 0 off."
    )
    requeue_after: float = Field(
        default=60, ge=0, description="Age of a QUEUED job presumed to lack a message."
    )
    checkpoint_min_interval: float = Field(
        default=5.0, ge=0, description="Min seconds between training checkpoints (besides every N epochs)."
    )
    data_roots: list[Path] = Field(
        default_factory=list, description="Local folders jobs may read datasets from (default: home/data)."
    )
    tstr_samples_per_class: int = Field(
        default=500, ge=10, description="Generated samples per class the promotion gate's TSTR trains on."
    )
    tick_interval: float = Field(
        default=15, gt=0, description="Seconds between schedule ticks (synthjobs beat)."
    )
    max_request_bytes: int = Field(default=1 << 20, ge=1024, description="Largest JSON request body (413).")
    max_upload_bytes: int = Field(default=1 << 30, ge=1, description="Largest dataset upload accepted.")

    max_epochs: int = 1000
    max_batch_size: int = 4096
    max_latent_dim: int = 512
    max_hidden_dim: int = 8192
    max_samples_per_job: int = 100_000_000
    max_shard_size: int = 1_000_000
    max_shards: int = 10_000
    default_shard_size: int = 100_000

    def resolved_database_url(self) -> str:
        """The jobs database; an SQLite file under home when unset."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home.resolve() / 'synthjobs.db'}"

    def resolved_broker_url(self) -> str:
        """The Celery broker; kombu's SQLAlchemy transport on SQLite when unset (no server needed)."""
        if self.broker_url is not None:
            return self.broker_url.get_secret_value()
        return f"sqla+sqlite:///{self.home.resolve() / 'broker.db'}"

    def resolved_storage_url(self) -> str:
        """Where outputs go; a folder under home when unset."""
        return self.storage_url or (self.home.resolve() / "storage").as_uri()

    def resolved_torch_threads(self) -> int:
        """Torch intra-op threads per worker process.

        One core is left for the process's own I/O (uploads, SQL, broker), and the rest is split between
        worker processes. On a 2-core machine this is 1: PyTorch's default of 2 threads measured 2-27x
        slower there because of OpenMP spin-waiting.
        """
        if self.torch_threads:
            return self.torch_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, (cores - 1) // self.worker_processes)

    def resolved_data_roots(self) -> list[Path]:
        """Local folders a job may read a dataset from; nothing else on the worker's disk is reachable."""
        return [root.resolve() for root in self.data_roots] or [(self.home / "data").resolve()]

    def ensure_home(self) -> None:
        """Create the embedded default's folder when any default path points into it."""
        if not (self.database_url and self.broker_url and self.storage_url):
            self.home.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
