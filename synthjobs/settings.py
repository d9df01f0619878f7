"""One settings object for every process, read from `SYNTHJOBS_*` environment variables.

With no configuration at all the service runs on one machine: SQLite for jobs, kombu's SQLAlchemy
transport on a second SQLite file as the broker, and a local folder as storage, all under
`SYNTHJOBS_HOME` (default `./.synthjobs`). Production sets the three URLs to PostgreSQL, Redis and S3.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from synthjobs.rules.data_sources import LEGACY_TENANT, DataSource
from synthjobs.rules.tenant_policy import PolicyOverride
from synthjobs.sqlite_files import secure_sqlite_file


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
    s3_connect_timeout: float = Field(
        default=5, gt=0, le=120, description="Seconds to open a connection to S3 (one attempt)."
    )
    s3_read_timeout: float = Field(
        default=60, gt=0, le=3600, description="Seconds S3 may stay silent mid-response (one attempt)."
    )
    s3_max_attempts: int = Field(
        default=8,
        ge=1,
        le=20,
        description="HTTP attempts per S3 call, retried by botocore's standard mode (the API uses 3).",
    )

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
        default=None,
        min_length=16,
        description=(
            "Signs download links the API streams itself (local storage). Required when the database, "
            "broker and storage URLs are all set and storage is a folder; the embedded default generates "
            "one under home (mode 0600). Never the admin token."
        ),
    )
    presign_seconds: int = Field(
        default=300,
        ge=1,
        le=7 * 24 * 3600,
        description="Lifetime of download links; a signed link that expires later than this is refused.",
    )
    ui_secret: SecretStr | None = Field(
        default=None,
        min_length=16,
        description=(
            "Signs the /ui dashboard's session cookies and CSRF tokens; every API process must share it. "
            "The embedded default generates one under home (mode 0600); a production deployment without it "
            "serves no dashboard login (503) rather than sessions one process alone would accept."
        ),
    )
    ui_session_hours: float = Field(
        default=12, gt=0, le=24 * 30, description="How long a dashboard login lasts."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    webhook_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names, addresses or CIDRs webhooks may reach although private, "
        "loopback or link-local (e.g. 127.0.0.1,10.0.0.0/8). Everything else must be a public address.",
    )
    webhook_retry_hours: float = Field(
        default=24, gt=0, le=24 * 14, description="How long a failing webhook delivery is retried."
    )
    webhook_timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds per webhook POST.")

    queue: str = Field(
        default="gpu",
        description="Celery queue of the train lane; the sample lane's is `<queue>.sample` (`broker.queue`).",
    )
    worker_queues: str = Field(
        default="train,sample",
        description="Lanes a `synthjobs worker` consumes (`train`, `sample` or both; `--queues` overrides).",
    )
    plugins: str = Field(
        default="",
        description="Comma-separated modules that register extra job, dataset kinds or output formats "
        "(`synthjobs.plugins`); the API and every worker must name the same ones.",
    )
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
    worker_warm_up: bool = Field(
        default=True,
        description="Pay a fresh worker's one-off costs (the first torch.optim.Adam(), the digits loader's "
        "imports) in a background thread when it starts, instead of in its first job.",
    )
    requeue_after: float = Field(
        default=60, ge=0, description="Age of a QUEUED job presumed to lack a message."
    )
    shard_window: int = Field(
        default=4,
        ge=1,
        le=10_000,
        description="Sampling shards published and not yet done at once, over all jobs (about twice the "
        "worker processes); the rest wait in SQL and are released fairly as shards finish.",
    )
    tenant_weights: dict[str, Annotated[float, Field(gt=0, le=1000)]] = Field(
        default_factory=dict,
        description='Fair-share weight per tenant (JSON, e.g. {"acme": 2}); default 1 each.',
    )
    tenant_policies: dict[str, PolicyOverride] = Field(
        default_factory=dict,
        description="Per-tenant policy (JSON): weight, max_concurrent_jobs, max_submits_per_minute, "
        "max_storage_bytes; what a tenant leaves out is the deployment's default (`rules.tenant_policy`).",
    )
    checkpoint_min_interval: float = Field(
        default=5.0, ge=0, description="Min seconds between training checkpoints (besides every N epochs)."
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        description="Local folders the 'default' tenant may read datasets from (default: home/data).",
    )
    data_sources: dict[str, list[DataSource]] = Field(
        default_factory=dict,
        description="Per tenant, the only locations its datasets may come from (JSON: tenant -> list of "
        "'s3://bucket/prefix' | 'file:///root' | {url, endpoint_url, region, access_key_id_env, "
        "secret_access_key_env, session_token_env}).",
    )
    data_sources_instance_credentials: bool = Field(
        default=False,
        description="Let S3 data sources without their own credentials use the host's default AWS "
        "credential chain (instance profile, metadata endpoint); off: such sources are refused.",
    )
    allow_dataset_downloads: bool = Field(
        default=False, description="Let torchvision datasets with download: true fetch from the internet."
    )
    tstr_samples_per_class: int = Field(
        default=500,
        ge=10,
        le=50_000,
        description=(
            "Generated samples per class a model is scored on: its conditional accuracy and TSTR at "
            "training (which the promotion gate compares) and a sampling job's quality tstr."
        ),
    )
    sample_overlap: bool = Field(
        default=True,
        description="Encode and upload a shard on a background thread while its next images are generated "
        "(same bytes either way; off runs every step on the task's thread).",
    )
    tick_interval: float = Field(
        default=15, gt=0, description="Seconds between schedule ticks (synthjobs beat)."
    )
    max_request_bytes: int = Field(default=1 << 20, ge=1024, description="Largest JSON request body (413).")
    max_upload_bytes: int = Field(default=1 << 30, ge=1, description="Largest dataset upload accepted.")
    max_storage_bytes_per_tenant: int = Field(
        default=100 << 30,
        ge=0,
        le=1 << 60,
        description="Bytes a tenant may store (job outputs, models, uploads; summed in SQL); 0 no quota.",
    )
    # Off by default: expiry deletes users' outputs unasked and cannot be undone, so a deployment turns it
    # on knowing what its users expect (and registered models are never expired).
    retention_days: float = Field(
        default=0,
        ge=0,
        le=36500,
        description="Days after a job ends before the reconciler deletes its outputs; 0 keeps them.",
    )

    max_epochs: int = 1000
    max_batch_size: int = 4096
    max_latent_dim: int = 512
    max_hidden_dim: int = 8192
    max_samples_per_job: int = 100_000_000
    max_shard_size: int = 1_000_000
    max_shards: int = 10_000
    default_shard_size: int = 100_000
    # Byte and pixel budgets (issue 10): counts alone let a small request cost gigabytes. Defaults keep one
    # worker process on a 24 GiB machine well inside its memory.
    max_dataset_bytes: int = Field(
        default=1 << 30,
        ge=1,
        le=1 << 40,
        description="Largest decoded .npz dataset (its arrays' bytes, from their headers); 413 at upload.",
    )
    max_image_pixels: int = Field(
        default=1 << 24,
        ge=4,
        le=1 << 32,
        description="Largest image (width x height) of an image folder, read from its header before decoding "
        "(Pillow refuses past 179M pixels whatever this says).",
    )
    max_dataset_pixels: int = Field(
        default=1 << 28,
        ge=4,
        le=1 << 40,
        description="Pixels (width x height, summed over images) an image folder may decode to in all.",
    )
    max_model_parameters: int = Field(
        default=200_000_000,
        ge=1,
        le=1 << 40,
        description="Parameters of the CVAE a training job builds (16 bytes each while training with Adam).",
    )
    max_activation_bytes: int = Field(
        default=4 << 30,
        ge=1,
        le=1 << 44,
        description="Estimated activation memory of one training batch (image size x hidden x batch_size).",
    )
    max_shard_bytes: int = Field(
        default=512 << 20,
        ge=1,
        le=1 << 40,
        description="Largest output shard file; a worker holds about three times this while writing one.",
    )
    max_job_output_bytes: int = Field(
        default=16 << 30,
        ge=1,
        le=1 << 50,
        description="Largest output of one sampling job (all its shard files together).",
    )

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

    def resolved_data_sources(self, tenant: str) -> list[DataSource]:
        """The locations `tenant` may read datasets from: its own sources, never another tenant's.

        The 'default' tenant also owns the legacy `data_roots` (or, when it has no source at all, the
        embedded default's home/data), so single-tenant deployments keep working unchanged.
        """
        sources = list(self.data_sources.get(tenant, []))
        if tenant == LEGACY_TENANT:
            roots = self.data_roots or ([] if sources else [self.home / "data"])
            sources += [DataSource(url=root.resolve().as_uri()) for root in roots]
        return sources

    def is_production(self) -> bool:
        """Whether the database, broker and storage URLs are all configured (not the embedded default).

        Such a deployment may run its API on several machines, so nothing it needs to agree on (the
        signing key) may be generated per machine.
        """
        return bool(self.database_url and self.broker_url and self.storage_url)

    def make_home(self) -> Path:
        """Create home (mode 0700: it holds the ledger, tokens and outputs) if needed; its resolved path.

        Called by whatever writes a file there (the local token, beat's schedule, the signing key), so a
        production deployment that sets all three URLs never needs to create home by hand.
        """
        home = self.home.resolve()
        if not home.is_dir():
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return home

    def ensure_home(self) -> None:
        """Create the embedded default's folder when any default path points into it.

        SQLite files of the ledger and the broker are created owner-only (0600) before anyone opens them.
        """
        if not self.is_production():
            self.make_home()
        secure_sqlite_file(self.resolved_database_url())
        secure_sqlite_file(self.resolved_broker_url())


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing the environment."""
    return Settings()
