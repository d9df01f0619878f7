"""A Storage whose calls are retried on transient errors, unless the storage retries them itself.

Exactly one layer retries each storage call. For S3 that layer is botocore's standard retry mode, configured
on the client (`synthjobs.storage.s3`: `max_attempts`, connect and read timeouts), so `RetryingStorage`
passes S3 calls straight through: wrapping them again would multiply the attempts (3 x 8 HTTP requests for
one read) and the time a request waits. For any other storage (the local folder, whose transient failures
are a TimeoutError or ConnectionError from a network file system) it is the retry layer: tenacity's loop in
`synthjobs.retry`, at most `attempts` calls and about `deadline` seconds of backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TypeVar

from synthjobs.retry import retry_transient
from synthjobs.storage.base import Storage
from synthjobs.storage.s3 import S3Storage
from synthjobs.storage.staged import RetriedStage, StagedObject

T = TypeVar("T")


STORAGE_ATTEMPTS = 8  # calls per storage operation, for storage that does not retry itself
STORAGE_DEADLINE = 60.0  # seconds of backoff (plus the attempts' own time) before giving up


class RetryingStorage:
    """A Storage whose every call is retried on transient errors, unless `inner` retries on its own (S3)."""

    def __init__(
        self, inner: Storage, *, attempts: int = STORAGE_ATTEMPTS, deadline: float = STORAGE_DEADLINE
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.attempts, self.deadline = attempts, deadline
        # botocore retries every S3 request (synthjobs.storage.s3): one layer, so none here.
        self.retries_inside = isinstance(inner, S3Storage)

    def _retry(self, action: Callable[[], T], what: str) -> T:
        if self.retries_inside:
            return action()
        return retry_transient(action, what=what, attempts=self.attempts, deadline=self.deadline)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        return self._retry(lambda: self.inner.put_bytes(key, data, content_type), what=f"writing {key}")

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        start = stream.tell()
        digest = {"sha256": sha256} if sha256 is not None else {}

        def put() -> str:
            stream.seek(start)  # a failed attempt may have consumed part of the stream
            return self.inner.put_stream(key, stream, content_type, **digest)

        return self._retry(put, what=f"writing {key}")

    def stage(self, key: str, content_type: str = "application/octet-stream") -> StagedObject:
        staged = self._retry(lambda: self.inner.stage(key, content_type), what=f"staging {key}")
        if self.retries_inside:
            return staged
        return RetriedStage(staged, lambda commit, what: self._retry(commit, what=what), key)

    def sweep_partials(self, prefix: str, older_than: float) -> int:
        return self._retry(
            lambda: self.inner.sweep_partials(prefix, older_than), what=f"sweeping partials under {prefix}"
        )

    def get_bytes(self, key: str) -> bytes:
        return self._retry(lambda: self.inner.get_bytes(key), what=f"reading {key}")

    def exists(self, key: str) -> bool:
        return self._retry(lambda: self.inner.exists(key), what=f"checking {key}")

    def delete(self, key: str) -> None:
        self._retry(lambda: self.inner.delete(key), what=f"deleting {key}")

    def list_keys(self, prefix: str) -> list[str]:
        return self._retry(lambda: self.inner.list_keys(prefix), what=f"listing {prefix}")

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        return self._retry(lambda: self.inner.list_objects(prefix), what=f"listing {prefix}")

    def delete_keys(self, keys: list[str]) -> int:
        return self._retry(lambda: self.inner.delete_keys(keys), what=f"deleting {len(keys)} objects")

    def delete_prefix(self, prefix: str) -> list[tuple[str, int]]:
        return self._retry(lambda: self.inner.delete_prefix(prefix), what=f"deleting {prefix}")

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        return self._retry(lambda: self.inner.size_and_sha256(key), what=f"hashing {key}")

    def uri(self, key: str) -> str:
        return self.inner.uri(key)

    def key_of(self, uri: str) -> str:
        return self.inner.key_of(uri)

    def check(self) -> None:
        self.inner.check()

    def presigned_url(self, key: str, seconds: int) -> str | None:
        return self.inner.presigned_url(key, seconds)
