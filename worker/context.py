"""What a pipeline may do to its job while it runs: report progress, add events, learn when to stop.

Writes are short transactions of their own (one session per call), so a long training run never holds a
transaction open, and progress writes are throttled so a fast loop does not hammer the database. A
heartbeat thread renews the job's lease; when renewal fails (the job was cancelled, or another worker took
it over after this one stalled) the pipeline is told to stop at its next batch boundary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlalchemy.orm import Session

from synthjobs.errors import JobFailure
from synthjobs.ledger import jobs
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.retry import in_transaction
from synthjobs.ledger.tables import DEFAULT_TENANT, JobState
from synthjobs.settings import Settings
from synthjobs.storage.base import Storage
from worker.runtime import SHUTTING_DOWN

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised by a pipeline that noticed its job was cancelled, to end it CANCELLED."""


class LeaseLost(Exception):
    """This worker no longer holds the job (another took it over): stop without recording anything."""


class HandBack(Exception):
    """The worker is shutting down: the job was checkpointed and goes back to the queue to resume."""


class LeaseKeeper:
    """Renews a lease every third of its length in a daemon thread, while the `with` block runs.

    `renew(session)` returns False when the work is no longer ours; `lost` then becomes True.
    """

    def __init__(self, settings: Settings, renew: Callable[[Session], bool]) -> None:
        self.settings, self.renew = settings, renew
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (from any thread: a shard's tail stops its lease once it is recorded)."""
        self._done.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> LeaseKeeper:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _beat(self) -> None:
        while not self._done.wait(self.settings.lease_seconds / 3):
            try:
                with session_scope(self.settings.resolved_database_url()) as session:
                    if not self.renew(session):
                        self.lost = True
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease has slack
                log.warning("could not renew a lease", exc_info=True)


@dataclass
class JobContext:
    """One running job, as seen by a pipeline."""

    job_id: str
    params: dict[str, Any]
    settings: Settings
    storage: Storage
    device: torch.device
    worker: str = "worker"
    attempt: int = 1
    tenant: str = DEFAULT_TENANT
    max_runtime_seconds: float = float("inf")
    _started: float = field(default_factory=time.monotonic, repr=False)
    _last_write: float = field(default=0.0, repr=False)
    _stop_reason: str | None = field(default=None, repr=False)
    _lease: LeaseKeeper | None = field(default=None, repr=False)

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url()

    def progress(
        self,
        fraction: float,
        phase: str,
        *,
        force: bool = False,
        events: Sequence[tuple[str, str, dict[str, Any] | None]] = (),
    ) -> None:
        """Record progress; throttled to one write per `progress_interval` unless forced.

        `events` ((kind, message, data) each) are added in the same transaction, and always written: a
        training epoch's progress and its events cost one commit, not one each.
        """
        now = time.monotonic()
        if not force and not events and now - self._last_write < self.settings.progress_interval:
            return
        self._last_write = now

        def write(session: Session) -> None:
            if not jobs.record_progress(session, self.job_id, fraction, phase, events):
                self._note_not_running(session)

        in_transaction(self.database_url, write, what=f"recording progress of {self.job_id}")
        log.info("job %s: %s (%.0f%%)", self.job_id, phase, 100 * fraction)

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Append an event to the job's history."""
        in_transaction(
            self.database_url,
            lambda s: jobs.add_event(s, self.job_id, kind, message, data),
            what="adding an event",
        )

    @property
    def lease_lost(self) -> bool:
        """Whether another worker (or the reconciler) took the job over: from then on it owns the job's
        checkpoints and outcome, and this worker must write nothing more."""
        if self._stop_reason is None and self._lease is not None and self._lease.lost:
            self._stop_reason = "lease lost"
        return self._stop_reason == "lease lost"

    def should_stop(self) -> bool:
        """True once the job was cancelled, ran out of time, was taken over, or the worker is stopping."""
        if self.lease_lost:
            return True
        if self._stop_reason is None and time.monotonic() - self._started > self.max_runtime_seconds:
            self._stop_reason = "max runtime exceeded"
        if self._stop_reason is None and SHUTTING_DOWN.is_set():
            self._stop_reason = "worker shutting down"
        return self._stop_reason is not None

    def raise_if_stopped(self) -> None:
        """Turn a stop into the exception that ends the job the right way."""
        if not self.should_stop():
            return
        if self._stop_reason == "cancelled":
            raise JobCancelled()
        if self._stop_reason == "lease lost":
            raise LeaseLost()
        if self._stop_reason == "worker shutting down":
            raise HandBack()
        raise JobFailure(f"{self._stop_reason} ({self.max_runtime_seconds:.0f}s); last checkpoint kept")

    def _note_not_running(self, session: Session) -> None:
        job = jobs.get_job(session, self.job_id)
        if job.state == JobState.CANCELLED.value:
            self._stop_reason = "cancelled"
        elif job.worker != self.worker or job.state != JobState.RUNNING.value:
            self._stop_reason = self._stop_reason or "lease lost"

    def start_heartbeat(self) -> None:
        """Renew the job's lease until `stop_heartbeat`; a failed renewal tells the pipeline to stop."""

        def renew(session: Session) -> bool:
            if jobs.renew_lease(session, self.job_id, self.worker, self.settings.lease_seconds):
                return True
            self._note_not_running(session)
            return False

        self._lease = LeaseKeeper(self.settings, renew).__enter__()

    def stop_heartbeat(self) -> None:
        if self._lease is not None:
            self._lease.__exit__()
