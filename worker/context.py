"""What a pipeline may do to its job while it runs: report progress, add events, notice cancellation.

Writes are short transactions of their own (one session per call), so a long training run never holds a
transaction open, and progress writes are throttled so a fast loop does not hammer the database.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from synthjobs import jobs
from synthjobs.db import session_scope
from synthjobs.models import JobState
from synthjobs.settings import Settings
from synthjobs.storage import Storage

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised by a pipeline that noticed its job was cancelled, to end it CANCELLED."""


@dataclass
class JobContext:
    """One running job, as seen by a pipeline."""

    job_id: str
    params: dict[str, Any]
    settings: Settings
    storage: Storage
    device: torch.device
    _last_write: float = field(default=0.0, repr=False)
    _cancelled: bool = field(default=False, repr=False)

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url()

    def progress(self, fraction: float, phase: str, *, force: bool = False) -> None:
        """Record progress; throttled to one write per `progress_interval` unless forced."""
        now = time.monotonic()
        if not force and now - self._last_write < self.settings.progress_interval:
            return
        self._last_write = now
        with session_scope(self.database_url) as session:
            if not jobs.set_progress(session, self.job_id, fraction, phase):
                self._cancelled = self._cancelled or self._state_is(session, JobState.CANCELLED)
        log.info("job %s: %s (%.0f%%)", self.job_id, phase, 100 * fraction)

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Append an event to the job's history."""
        with session_scope(self.database_url) as session:
            jobs.add_event(session, self.job_id, kind, message, data)

    def cancelled(self) -> bool:
        """Whether the job was cancelled; what progress writes learned, so it costs no query."""
        return self._cancelled

    def _state_is(self, session: Any, state: JobState) -> bool:
        return jobs.get_job(session, self.job_id).state == state.value
