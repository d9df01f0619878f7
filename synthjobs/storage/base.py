"""Object storage behind one small interface: S3 through boto3 (AWS, MinIO, moto) or a local folder.

The backend is chosen by the URL scheme (`s3://bucket/prefix`, `file:///path`). Keys are built by the
service from its own ids (`jobs/{job_id}/...`, `models/{model_id}/...`), so a retried task overwrites the
same object; `validate_key` refuses anything that could leave the storage root.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote, urlparse

from synthjobs.errors import InvalidKey
from synthjobs.storage.staged import StagedObject

_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def validate_key(key: str) -> str:
    """Return `key` if it is a relative path of plain segments; raise InvalidKey otherwise."""
    if not key or len(key) > 1024:
        raise InvalidKey("object key must be 1-1024 characters")
    segments = key.split("/")
    for segment in segments:
        if not _KEY_SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise InvalidKey(f"invalid object key segment {segment!r} in {key!r}")
    return key


class Storage(Protocol):
    """What the service needs from a blob store."""

    url: str

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store `data` under `key` (overwriting) and return the object's URI."""
        ...

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        """Store a file-like object's content under `key` without holding it all in memory.

        `sha256`: the content's digest (hex) when the caller has it; a store that checks uploads (S3)
        sends it as the checksum to verify instead of hashing the content once more.
        """
        ...

    def stage(self, key: str, content_type: str = "application/octet-stream") -> StagedObject:
        """A file to write the object under `key` into, stored by its `commit` (`storage.staged`).

        Nothing is visible under `key` before the commit; the file is written once, where the store can
        take it without another copy (a local folder renames it into place).
        """
        ...

    def sweep_partials(self, prefix: str, older_than: float) -> int:
        """Remove what staged objects under `prefix`, untouched for `older_than` seconds, left (writers
        killed mid-write); returns how many. The stores that leave nothing behind return 0."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The object's content; ObjectNotFound when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object under `key`; absent is fine."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""
        ...

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size in bytes) of every object under `prefix`, sorted by key."""
        ...

    def delete_keys(self, keys: list[str]) -> int:
        """Remove the objects under `keys` (absent ones are fine); returns how many keys were asked for."""
        ...

    def delete_prefix(self, prefix: str) -> list[tuple[str, int]]:
        """Remove every object under `prefix` (a folder such as `jobs/{id}/`); returns what was removed."""
        ...

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        """The stored object's size and sha256 (hex), as storage holds it now; ObjectNotFound if absent."""
        ...

    def uri(self, key: str) -> str:
        """The URI that names the object under `key`."""
        ...

    def key_of(self, uri: str) -> str:
        """The key of an object URI issued by this storage; InvalidKey for any other URI."""
        ...

    def check(self) -> None:
        """Raise StorageError unless the store is reachable and writable (health check)."""
        ...

    def presigned_url(self, key: str, seconds: int) -> str | None:
        """A URL that downloads the object without credentials for `seconds`; None where unsupported."""
        ...


def validate_prefix(prefix: str) -> str:
    """`prefix` if it names a folder of plain segments ending in '/' (`jobs/{id}/`); InvalidKey otherwise.

    Deleting by prefix must never match a sibling (`jobs/abc` would match `jobs/abcd...`) or everything.
    """
    if not prefix.endswith("/") or prefix == "/":
        raise InvalidKey(f"a prefix to delete must be a folder ending in '/', not {prefix!r}")
    validate_key(prefix[:-1])
    return prefix


def uri_under(url: str, key: str) -> str:
    """The URI of `key` in the storage rooted at `url` (`file:///…/key`, `s3://bucket/prefix/key`)."""
    return f"{url}/{validate_key(key)}"


def key_under(url: str, uri: str) -> str:
    """The key `uri` names in the storage rooted at `url`; InvalidKey for a URI outside it."""
    if not uri.startswith(url + "/"):
        raise InvalidKey(f"{uri!r} is not in {url}")
    return validate_key(uri[len(url) + 1 :])


def local_path_of(url: str) -> Path:
    """The local path a `file://` URL names, percent-decoded and resolved (symlinks and `..` followed).

    The API and the worker both check data roots against this, so an encoded `%2e%2e` cannot slip past one.
    """
    return Path(unquote(urlparse(url).path)).resolve()
