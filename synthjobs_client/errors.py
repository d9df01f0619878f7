"""What the client raises: the API refused, could not be reached, or a job did not end well.

A small hierarchy of its own (the client installs without the server, so not `synthjobs.errors`).
"""

from __future__ import annotations

import json
from typing import Any

Job = dict[str, Any]

# Where FastAPI says a bad value came from; the field path after it is what a person typed.
_SOURCES = {"body", "query", "path", "header", "cookie"}


def _field(loc: list[Any]) -> str:
    """`["body", "dataset", "torchvision", "root"]` → `dataset.torchvision.root`.

    pydantic's own validator names in a location (`function-after[...]`, `literal['digits']`) are dropped:
    they name code, not a field.
    """
    parts = [str(part) for part in loc]
    if parts and parts[0] in _SOURCES:
        source, parts = parts[0], parts[1:]
        if source != "body" and parts:
            parts[0] = f"{parts[0]} ({source})"
    return ".".join(p for p in parts if "[" not in p)


def readable(detail: Any) -> str:
    """An API error `detail` as a line of text: `field.path: reason` for each validation error."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and all(isinstance(e, dict) and "msg" in e for e in detail) and detail:
        errors = [
            (_field(list(e.get("loc") or [])), str(e["msg"]).removeprefix("Value error, ")) for e in detail
        ]
        fields = {field for field, _ in errors}
        # A union reports every branch; the one that reached deeper (`dataset.torchvision.root`) is the one
        # the input meant, so its shallower siblings (`dataset: Input should be 'digits'`) are noise.
        errors = [(f, m) for f, m in errors if not any(other.startswith(f + ".") for other in fields if f)]
        lines = [f"{field}: {message}" if field else message for field, message in errors]
        return "; ".join(dict.fromkeys(lines))
    return json.dumps(detail, default=str)


class SynthJobsClientError(Exception):
    """Base of every error the client raises."""


class ClientError(SynthJobsClientError):
    """The API answered with an error status; `status` and `detail` say which and why.

    `message` is the detail as text for people (`dataset.root: must be inside ...`); `detail` is the
    API's JSON as it came.
    """

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        self.message = readable(detail)
        super().__init__(f"HTTP {status}: {self.message}")


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
