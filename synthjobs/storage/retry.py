"""A Storage whose calls are retried on transient errors: the only retry layer for storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, TypeVar

from synthjobs.retry import retry_transient
from synthjobs.storage.base import Storage

T = TypeVar("T")


STORAGE_ATTEMPTS = 8  # calls per storage operation; S3Storage itself makes one HTTP attempt per call
STORAGE_DEADLINE = 60.0  # seconds of backoff (plus the attempts' own timeouts) before giving up


class RetryingStorage:
    """A Storage whose every call is retried on transient errors (an S3 endpoint down for a few seconds).

    This is the only retry layer for storage: boto3's own retries are off (see S3Storage), so one call
    here costs at most `attempts` HTTP attempts and about `deadline` seconds of backoff.
    """

    def __init__(
        self, inner: Storage, *, attempts: int = STORAGE_ATTEMPTS, deadline: float = STORAGE_DEADLINE
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.attempts, self.deadline = attempts, deadline

    def _retry(self, action: Callable[[], T], what: str) -> T:
        return retry_transient(action, what=what, attempts=self.attempts, deadline=self.deadline)

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        return self._retry(lambda: self.inner.put_bytes(key, data, content_type), what=f"writing {key}")

    def put_stream(self, key: str, stream: IO[bytes], content_type: str = "application/octet-stream") -> str:
        start = stream.tell()

        def put() -> str:
            stream.seek(start)  # a failed attempt may have consumed part of the stream
            return self.inner.put_stream(key, stream, content_type)

        return self._retry(put, what=f"writing {key}")

    def get_bytes(self, key: str) -> bytes:
        return self._retry(lambda: self.inner.get_bytes(key), what=f"reading {key}")

    def exists(self, key: str) -> bool:
        return self._retry(lambda: self.inner.exists(key), what=f"checking {key}")

    def delete(self, key: str) -> None:
        self._retry(lambda: self.inner.delete(key), what=f"deleting {key}")

    def list_keys(self, prefix: str) -> list[str]:
        return self._retry(lambda: self.inner.list_keys(prefix), what=f"listing {prefix}")

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        return retry_transient(lambda: self.inner.list_objects(prefix), what=f"listing {prefix}")

    def delete_keys(self, keys: list[str]) -> int:
        return retry_transient(lambda: self.inner.delete_keys(keys), what=f"deleting {len(keys)} objects")

    def delete_prefix(self, prefix: str) -> list[tuple[str, int]]:
        return retry_transient(lambda: self.inner.delete_prefix(prefix), what=f"deleting {prefix}")

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
