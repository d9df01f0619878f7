"""Where a tenant may read training data from: an explicit allow-list of locations, matched exactly.

Each tenant has its own list of data sources (`SYNTHJOBS_DATA_SOURCES`): `s3://bucket/prefix` or
`file:///root`, an S3 source with its own endpoint and credentials (named by environment variable, never the
secret itself). A dataset URL is allowed only if it lies inside one of its tenant's sources, compared segment
by segment after percent-decoding (`s3://b/data2` is not inside `s3://b/data`, `%2e%2e` is `..` and refused),
and never when it overlaps the service's own storage, whatever the sources say: the service's outputs are
other tenants' models and jobs.

Pure: no SQL, Celery or boto3; the API and the worker each resolve local paths (symlinks) and call in here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The tenant that owns the legacy `SYNTHJOBS_DATA_ROOTS` (and the embedded default's home/data); equal to
# synthjobs.ledger.tables.DEFAULT_TENANT, not imported from there because that module needs SQLAlchemy.
LEGACY_TENANT = "default"
SCHEMES = ("s3", "file")


class DataSourceRefused(ValueError):
    """A dataset location that is not inside one of its tenant's data sources, or may not be read."""


class DataSource(BaseModel):
    """One location a tenant may read datasets from, as the deployment configures it.

    Credentials are references: the names of environment variables that hold them on the API and worker
    hosts, so the configuration itself holds no secret and no error or log line can echo one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2048, description="s3://bucket/prefix or file:///root")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, ...); default SYNTHJOBS_S3_ENDPOINT_URL."
    )
    region: str | None = Field(default=None, description="S3 region; default SYNTHJOBS_S3_REGION.")
    access_key_id_env: str | None = Field(default=None, description="Env var holding the access key id.")
    secret_access_key_env: str | None = Field(default=None, description="Env var holding the secret key.")
    session_token_env: str | None = Field(default=None, description="Env var holding a session token.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> DataSource:
        self.location  # noqa: B018 - raises for a URL that is not a location
        if bool(self.access_key_id_env) != bool(self.secret_access_key_env):
            raise ValueError(f"{self.url}: set both access_key_id_env and secret_access_key_env, or neither")
        if self.access_key_id_env and self.location.scheme != "s3":
            raise ValueError(f"{self.url}: credentials apply to s3:// sources only")
        return self

    @property
    def location(self) -> Location:
        return parse_location(self.url)

    @property
    def has_credentials(self) -> bool:
        """Whether the source names its own credentials (otherwise only instance credentials could work)."""
        return bool(self.access_key_id_env and self.secret_access_key_env)


@dataclass(frozen=True)
class Location:
    """A normalised `s3://bucket/seg/...` or `file:///seg/...`: what is checked is what gets read."""

    scheme: str
    bucket: str  # "" for file://
    segments: tuple[str, ...]

    @property
    def path(self) -> str:
        """The S3 key prefix (no slashes around it), or the absolute local path."""
        joined = "/".join(self.segments)
        return "/" + joined if self.scheme == "file" else joined

    @property
    def url(self) -> str:
        if self.scheme == "file":
            return f"file://{self.path}"
        return f"s3://{self.bucket}/{self.path}".rstrip("/")

    def contains(self, other: Location) -> bool:
        """Whether `other` is this location or lies under it (whole segments, never a string prefix)."""
        return (
            self.scheme == other.scheme
            and self.bucket == other.bucket
            and other.segments[: len(self.segments)] == self.segments
        )

    def overlaps(self, other: Location) -> bool:
        """Whether one of the two lies inside the other."""
        return self.contains(other) or other.contains(self)


def parse_location(url: str) -> Location:
    """`url` as a Location; DataSourceRefused for another scheme, no bucket, `..`, NUL, query or fragment.

    The path is percent-decoded before it is split, so `%2F` and `%2e%2e` mean what they decode to.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced '[' in the host part
        raise DataSourceRefused(f"{url!r} is not a valid URL") from exc
    if parts.scheme not in SCHEMES:
        raise DataSourceRefused(f"{url!r} is neither an s3:// nor a file:// URL")
    if parts.query or parts.fragment:
        raise DataSourceRefused(f"{url!r} must not have a query or fragment")
    path = unquote(parts.path)
    if "\x00" in path or "\x00" in parts.netloc:
        raise DataSourceRefused("a dataset URL must not contain NUL bytes")
    raw = path.split("/")
    if ".." in raw:
        raise DataSourceRefused(f"{url!r} must not contain '..'")
    segments = tuple(s for s in raw if s not in ("", "."))
    if parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise DataSourceRefused(f"{url!r} names no bucket")
        return Location("s3", parts.netloc, segments)
    if parts.netloc not in ("", "localhost"):
        raise DataSourceRefused(f"{url!r}: file:// URLs name no host")
    return Location("file", "", segments)


def local_location(path: str) -> Location:
    """An absolute local path (already resolved by the caller) as a file:// Location."""
    if not posixpath.isabs(path):
        raise DataSourceRefused(f"{path!r} is not an absolute path")
    raw = path.split("/")
    if ".." in raw or "\x00" in path:
        raise DataSourceRefused(f"{path!r} must not contain '..' or NUL bytes")
    return Location("file", "", tuple(s for s in raw if s not in ("", ".")))


def match_source(
    url: str,
    sources: Sequence[DataSource],
    service_storage: str,
    *,
    resolve_local: Callable[[str], str] = lambda path: path,
) -> tuple[DataSource, Location]:
    """The tenant's source that holds `url`, and `url` normalised (symlinks resolved for file://).

    Args:
        url: the requested dataset location (`s3://...`, `file://...`) or an absolute local path.
        sources: the requesting tenant's data sources, and no one else's.
        service_storage: the service's own storage URL; anything overlapping it is refused.
        resolve_local: turns a local path into its real path (os.path.realpath on a host that sees it).

    Raises:
        DataSourceRefused: the location is malformed, in the service's storage, or under none of `sources`.
            The message names only `url` and the tenant's own sources.
    """
    wanted = _normalised(url, resolve_local)
    service = _normalised(service_storage, resolve_local)
    if wanted.overlaps(service):
        raise DataSourceRefused(
            f"{url} lies in the service's own output storage, which is never a dataset location"
        )
    for source in sources:
        if _normalised(source.url, resolve_local).contains(wanted):
            return source, wanted
    if not sources:
        raise DataSourceRefused(f"{url} is not allowed: this tenant has no data sources configured")
    allowed = ", ".join(source.url for source in sources)
    raise DataSourceRefused(f"{url} is not under one of this tenant's data sources ({allowed})")


def check_inside(
    path: str, root: Location, service_storage: str, *, resolve_local: Callable[[str], str]
) -> Location:
    """`path` resolved, if it stays inside `root` and outside the service's storage (symlinks, per file).

    Raises:
        DataSourceRefused: it resolves outside `root` or into the service's storage.
    """
    real = local_location(resolve_local(path))
    service = _normalised(service_storage, resolve_local)
    if not root.contains(real) or service.contains(real):
        raise DataSourceRefused(f"{path} is a link that leads outside its data source {root.url}")
    return real


def _normalised(url: str, resolve_local: Callable[[str], str]) -> Location:
    location = local_location(url) if url.startswith("/") else parse_location(url)
    if location.scheme == "file":
        return local_location(resolve_local(location.path))
    return location
