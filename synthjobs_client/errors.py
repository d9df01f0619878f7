"""What the client raises: the API refused, could not be reached, or a job did not end well.

A small hierarchy of its own (the client installs without the server, so not `synthjobs.errors`).
"""

from __future__ import annotations

from typing import Any

Job = dict[str, Any]


class SynthJobsClientError(Exception):
    """Base of every error the client raises."""


class ClientError(SynthJobsClientError):
    """The API answered with an error status; `status` and `detail` say which and why."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class APIUnreachable(SynthJobsClientError):
    """The API could not be reached at all."""


class JobFailed(SynthJobsClientError):
    """A waited-for job ended FAILED or CANCELLED; `job` holds its last state."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job['id']} ended {job['state']}: {job.get('error') or 'no error recorded'}")
        self.job = job


class WaitTimeout(SynthJobsClientError):
    """A job did not finish within the time given to `wait`."""


class DownloadError(SynthJobsClientError):
    """A downloaded output does not match the manifest (size or sha256)."""


class JobNotFinished(SynthJobsClientError):
    """A job's outputs were asked for while it is still QUEUED or RUNNING; `job` holds its state."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job['id']} is still {job['state']}: wait for it to finish, then download")
        self.job = job
