"""A job's output objects, and signed download links for the ones the API streams itself.

S3 objects get S3's own presigned URLs. Objects in a local folder are streamed by the API at
`/v1/jobs/{id}/artifacts/{name}?expires=…&signature=…`: the signature is an HMAC of (job, name, expiry) with
the deployment's signing key, so a link works without a token, for one object, until it expires.

The signing key is its own secret, never the admin token: `SYNTHJOBS_SIGNING_KEY`, or on the embedded
default a random key generated once under home (mode 0600). A deployment that sets all three URLs may run
its API on several machines, which must agree on the key, so there it is required when storage is a folder
(the API refuses to start without it); with S3 storage links are S3's own and need no key. A link is
honoured only until its expiry, and only if that expiry is at most `SYNTHJOBS_PRESIGN_SECONDS` away: a
link claiming a longer life was not issued by this deployment as configured now.

Storage URIs stored in the ledger name local objects by absolute `file://` path; users see them by their
storage key instead (`hide_storage_root`): where the server keeps its files is not theirs to know.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from synthjobs.errors import ConfigurationError
from synthjobs.rules.kinds import artifact_keys
from synthjobs.settings import Settings

if TYPE_CHECKING:
    from synthjobs.ledger.tables import Job

SIGNING_KEY_FILE = "signing-key"
# Leeway for the clocks of API replicas: a link issued by one whose clock runs a little ahead stays valid.
CLOCK_SKEW_SECONDS = 30


def artifact_uris(job: Job) -> dict[str, str]:
    """The job's output objects by file name (empty until it has succeeded, and once it is deleted)."""
    if job.deleted_at is not None:
        return {}
    result: dict[str, Any] = job.result or {}
    uris = [result[k] for k in artifact_keys() if result.get(k)]  # the kinds' keys, from rules.kinds
    uris += list(result.get("output_uris") or [])
    return {uri.rsplit("/", 1)[-1]: uri for uri in uris}


def sign(key: bytes, job_id: str, name: str, expires: int) -> str:
    return hmac.new(key, f"{job_id}/{name}/{expires}".encode(), hashlib.sha256).hexdigest()


def signed_query(key: bytes, job_id: str, name: str, seconds: int, now: float | None = None) -> str:
    """`expires=…&signature=…` for a link valid `seconds` from now."""
    expires = int((now or time.time()) + seconds)
    return f"expires={expires}&signature={sign(key, job_id, name, expires)}"


def signature_valid(
    key: bytes,
    job_id: str,
    name: str,
    expires: int,
    signature: str,
    *,
    max_seconds: int,
    now: float | None = None,
) -> bool:
    """Whether a link's signature is ours, it has not expired, and it expires within `max_seconds`."""
    now = now or time.time()
    if expires < now or expires > now + max_seconds + CLOCK_SKEW_SECONDS:
        return False
    return hmac.compare_digest(sign(key, job_id, name, expires).encode(), signature.encode())


def signing_key(settings: Settings) -> bytes | None:
    """The key download links are signed with: the configured one, else (embedded default) the local one.

    None in a production deployment without `SYNTHJOBS_SIGNING_KEY` (signed links are then refused; see
    `check_signing_key` for when the API will not start that way).
    """
    if settings.signing_key is not None:
        return settings.signing_key.get_secret_value().encode()
    if settings.is_production():
        return None
    return local_secret(settings.make_home() / SIGNING_KEY_FILE)


def check_signing_key(settings: Settings) -> None:
    """Raise ConfigurationError when this API would have to sign links but has no shared key to do it."""
    local_storage = settings.resolved_storage_url().startswith("file:")
    if settings.is_production() and local_storage and settings.signing_key is None:
        raise ConfigurationError(
            "SYNTHJOBS_SIGNING_KEY is required: storage is a local folder, so the API signs its download "
            "links itself, and every API process must share the key (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def local_secret(path: Path) -> bytes:
    """Read the key file, or create it (0600) atomically: concurrent first starts agree on one key."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(tmp, path)  # fails if another process made the key first; then theirs is the key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()


def hide_storage_root(value: Any, storage_url: str) -> Any:
    """`value` with a local storage root taken out of every string in it (dicts and lists walked).

    `file:///srv/synthjobs/storage/jobs/…/manifest.json` becomes `jobs/…/manifest.json`, the object's
    storage key, in a result, a job's params, an event or an error message alike. S3 URIs are left as
    they are: they name a bucket the user's presigned links point at anyway, not a server's disk.

    Args:
        value: a JSON-like value from the ledger.
        storage_url: the URL of the storage that wrote it (`Storage.url`: a local root, resolved).
    """
    if not storage_url.startswith("file:"):
        return value
    prefixes = (storage_url.rstrip("/") + "/", unquote(urlsplit(storage_url).path).rstrip("/") + "/")

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for prefix in prefixes:
                item = item.replace(prefix, "")
            return item
        if isinstance(item, dict):
            return {key: walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [walk(inner) for inner in item]
        return item

    return walk(value)
