"""A job's output objects, and signed download links for the ones the API streams itself.

S3 objects get S3's own presigned URLs. Objects in a local folder are streamed by the API at
`/v1/jobs/{id}/artifacts/{name}?expires=…&signature=…`: the signature is an HMAC of (job, name, expiry) with
the deployment's signing key, so a link works without a token, for one object, until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from synthjobs.models import Job

TRAIN_ARTIFACTS = ("checkpoint_uri", "model_card_uri", "metrics_uri", "loss_curve_uri", "grid_uri")
SAMPLE_ARTIFACTS = ("manifest_uri", "grid_uri")


def artifact_uris(job: Job) -> dict[str, str]:
    """The job's output objects by file name (empty until it has succeeded, and once it is deleted)."""
    if job.deleted_at is not None:
        return {}
    result: dict[str, Any] = job.result or {}
    uris = [result[k] for k in (*TRAIN_ARTIFACTS, *SAMPLE_ARTIFACTS) if result.get(k)]
    uris += list(result.get("output_uris") or [])
    return {uri.rsplit("/", 1)[-1]: uri for uri in uris}


def sign(key: bytes, job_id: str, name: str, expires: int) -> str:
    return hmac.new(key, f"{job_id}/{name}/{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(key: bytes, job_id: str, name: str, seconds: int, now: float | None = None) -> str:
    """`expires=…&signature=…` for a link valid `seconds` from now."""
    expires = int((now or time.time()) + seconds)
    return f"expires={expires}&signature={sign(key, job_id, name, expires)}"


def signature_valid(
    key: bytes, job_id: str, name: str, expires: int, signature: str, now: float | None = None
) -> bool:
    """Whether a link's signature is ours and it has not expired."""
    if expires < (now or time.time()):
        return False
    return hmac.compare_digest(sign(key, job_id, name, expires).encode(), signature.encode())
