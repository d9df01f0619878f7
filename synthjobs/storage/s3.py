"""Storage on any S3-compatible endpoint through boto3, and the one place boto3 failures are classified.

Retry policy: botocore's "standard" retry mode is the one and only retry layer for S3. Each call makes at
most `max_attempts` HTTP attempts (settings.s3_max_attempts, 8 by default; the API asks for 3 so a request
waits seconds, not a minute), retrying what botocore deems transient (connection errors and timeouts,
5xx, 429 and throttling codes) with exponential backoff and full jitter (up to 1, 2, 4, ... s, capped at
20 s); each attempt is bounded by `s3_connect_timeout` and `s3_read_timeout`. botocore also retries each
part of a multipart upload and rewinds a request body before resending it. `RetryingStorage` passes S3
calls straight through, so there is no retry-on-retry. What still fails after the last attempt becomes a
StorageError classified by `is_transient_s3`, which tells the worker whether retrying the whole task later
may help.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import IO, Any

from synthjobs.errors import ObjectNotFound, StorageError
from synthjobs.settings import Settings
from synthjobs.storage.base import key_under, uri_under, validate_key, validate_prefix
from synthjobs.storage.staged import SpooledStage


class S3Storage:
    """A bucket and prefix on any S3-compatible endpoint, through boto3."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        settings: Settings,
        *,
        client: Any = None,
        max_attempts: int | None = None,
    ) -> None:
        """`client`: a boto3 S3 client of its own (a tenant's data source); default: the service's.

        `max_attempts`: HTTP attempts per call (botocore's retries); default `settings.s3_max_attempts`.
        """
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        if client is not None:
            self.client = client
            return
        key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
        self.client = _service_client(
            settings.s3_endpoint_url,
            settings.s3_region,
            max_attempts or settings.s3_max_attempts,
            settings.s3_connect_timeout,
            settings.s3_read_timeout,
            (key_id.get_secret_value(), secret.get_secret_value()) if key_id and secret else None,
        )

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextmanager
    def _call(self, message: str, *, missing: str | None = None) -> Iterator[None]:
        """Turn whatever boto3 raises inside the block into a classified StorageError (see `s3_error`).

        With `missing`, a "no such key" answer becomes ObjectNotFound(missing).
        """
        try:
            yield
        except StorageError:
            raise  # InvalidKey from validate_key, or an error already classified
        except _s3_exceptions() as exc:
            if missing is not None and _is_not_found(exc):
                raise ObjectNotFound(missing) from exc
            raise s3_error(message, exc) from exc

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        with self._call(f"could not write {self.uri(key)}"):
            self.client.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, ContentType=content_type
            )
        return self.uri(key)

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        """Multipart upload for large objects (boto3's managed transfer), a single PUT for small ones.

        Every part is sent with a SHA256 checksum that S3 verifies before it stores the part. A small object
        whose `sha256` the caller gives is sent with that digest as its checksum: S3 refuses a body that does
        not match the caller's digest, and botocore does not hash the body a second time for it (over
        plain HTTP it still hashes it once to sign the request).
        """
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        extra = {"ContentType": content_type, "ChecksumAlgorithm": "SHA256"}
        if sha256 is not None and _remaining(stream) < MULTIPART_BYTES:  # one PUT: its checksum is the digest
            extra = {
                "ContentType": content_type,
                "ChecksumSHA256": base64.b64encode(bytes.fromhex(sha256)).decode(),
            }
        with self._call(f"could not write {self.uri(key)}"):
            # S3 checks the body against the SHA256 sent with it and refuses a mismatch, so the sha256 the
            # worker computed while writing is what S3 holds (no read-back).
            self.client.upload_fileobj(
                _Unclosable(stream), self.bucket, self._full(key), ExtraArgs=extra, Config=config
            )
        return self.uri(key)

    def stage(self, key: str, content_type: str = "application/octet-stream") -> SpooledStage:
        """A local spool, sent by `put_stream` (with the writer's sha256 as its checksum) at commit."""
        validate_key(key)
        return SpooledStage(lambda stream, sha256: self.put_stream(key, stream, content_type, sha256=sha256))

    def sweep_partials(self, prefix: str, older_than: float) -> int:
        """Nothing to sweep: a staged object is a local spool until its upload, which S3 makes atomic."""
        validate_prefix(prefix)
        return 0

    def get_bytes(self, key: str) -> bytes:
        with self._call(f"could not read {self.uri(key)}", missing=f"no object {self.uri(key)}"):
            response = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return bytes(response["Body"].read())

    def get_raw(self, key: str) -> bytes:
        """A user's object under this prefix, by a key the service did not build (read-only datasets)."""
        full = f"{self.prefix}/{key}" if self.prefix else key
        with self._call(f"could not read s3://{self.bucket}/{full}"):
            return bytes(self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read())

    def presigned_url(self, key: str, seconds: int) -> str | None:
        with self._call(f"could not sign a URL for {self.uri(key)}"):
            return str(
                self.client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)}, ExpiresIn=seconds
                )
            )

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        """Reads the object back and hashes it: what is stored, not what we meant to store."""
        digest, size = hashlib.sha256(), 0
        with self._call(f"could not read {self.uri(key)}", missing=f"no object {self.uri(key)}"):
            body = self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
            for chunk in body.iter_chunks(1 << 20):
                size += len(chunk)
                digest.update(chunk)
        return size, digest.hexdigest()

    def delete(self, key: str) -> None:
        """Remove the object under `key` (absent is fine)."""
        with self._call(f"could not delete {self.uri(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def exists(self, key: str) -> bool:
        try:
            with self._call(f"could not check {self.uri(key)}", missing=key):
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ObjectNotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> list[str]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        keys: list[str] = []
        with self._call(f"could not list {self.url}/{prefix}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    keys.append(key[len(self.prefix) + 1 :] if self.prefix else key)
        return sorted(keys)

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        out: list[tuple[str, int]] = []
        with self._call(f"could not list {self.url}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full_prefix
            ):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    out.append((key[len(self.prefix) + 1 :] if self.prefix else key, int(item["Size"])))
        return sorted(out)

    def delete_keys(self, keys: list[str]) -> int:
        """Batched `DeleteObjects`, 1,000 keys a request (S3's limit); any per-key error raises."""
        for start in range(0, len(keys), S3_DELETE_BATCH):
            batch = [{"Key": self._full(key)} for key in keys[start : start + S3_DELETE_BATCH]]
            with self._call(f"could not delete objects under {self.url}"):
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                transient = str(first.get("Code", "")) not in PERMANENT_S3_CODES
                message = f"could not delete {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                raise StorageError(f"{message} ({len(errors)} keys failed)", transient=transient)
        return len(keys)

    def delete_prefix(self, prefix: str) -> list[tuple[str, int]]:
        removed = self.list_objects(validate_prefix(prefix))
        self.delete_keys([key for key, _ in removed])
        return removed

    def uri(self, key: str) -> str:
        return uri_under(self.url, key)

    def key_of(self, uri: str) -> str:
        return key_under(self.url, uri)

    def check(self) -> None:
        with self._call(f"S3 bucket {self.bucket!r} is not reachable"):
            self.client.head_bucket(Bucket=self.bucket)


@lru_cache(maxsize=16)
def _service_client(
    endpoint_url: str | None,
    region: str | None,
    max_attempts: int,
    connect_timeout: float,
    read_timeout: float,
    credentials: tuple[str, str] | None,
) -> Any:
    """The service's boto3 client for these settings, one per process and shared (boto3 clients are
    thread-safe). A worker opens its storage for every shard: the first client of a fresh worker cost
    0.6 s (the boto3 import), later ones 2.5-4 ms and now and then 0.1-0.3 s (bench/README.md)."""
    import boto3
    from botocore.config import Config

    keys = {}
    if credentials:
        keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(
            # botocore is the only retry layer for S3 (module docstring): a refused endpoint costs
            # `max_attempts` HTTP attempts, not attempts x the retries of a wrapper. `total_max_attempts`
            # counts the first request too (Config's `max_attempts` would count only the retries).
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            signature_version="s3v4",  # presigned URLs as MinIO and every AWS region accept them
        ),
        **keys,
    )


# A forked child must not share its parent's connection pools: it builds its own client.
os.register_at_fork(after_in_child=_service_client.cache_clear)

S3_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per request
MULTIPART_BYTES = 64 << 20  # objects from this size up are sent in parts of this size


def _remaining(stream: IO[bytes]) -> int:
    """Bytes from the stream's position to its end (the position is kept)."""
    here = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    return end - here


class _Unclosable(io.RawIOBase):
    """A view of a stream that boto3 cannot close: it closes what it uploads, even after a failed attempt,
    and the caller must be able to rewind and try again."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:  # the caller owns the stream
        pass


PERMANENT_S3_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AccountProblem",
        "InvalidObjectState",
        "MethodNotAllowed",
    }
)


NOT_FOUND_S3_CODES = frozenset({"NoSuchKey", "404", "NotFound"})

# botocore errors a retry cannot fix: the request or the client's configuration is wrong. Every other
# botocore error (refused or reset connections, timeouts, truncated bodies, checksum mismatches) is a
# network or endpoint blip and transient.
_PERMANENT_BOTOCORE = (
    "NoCredentialsError",
    "PartialCredentialsError",
    "ParamValidationError",
    "NoRegionError",
    "UnknownServiceError",
    "UnknownSignatureVersionError",
    "UnsupportedSignatureVersionError",
    "InvalidRegionError",
    "InvalidEndpointConfigurationError",
    "InvalidS3AddressingStyleError",
    "InvalidConfigError",
    "InvalidRetryConfigurationError",
    "DataNotFoundError",
    "ValidationError",
)


@lru_cache(maxsize=1)
def _s3_exceptions() -> tuple[type[BaseException], ...]:
    """Everything a boto3 call can raise for a failed request (imported lazily: boto3 is heavy)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoCoreError, ClientError, Boto3Error, Urllib3Error, OSError)


@lru_cache(maxsize=1)
def _permanent_botocore() -> tuple[type[BaseException], ...]:
    import botocore.exceptions

    return tuple(
        getattr(botocore.exceptions, name)
        for name in _PERMANENT_BOTOCORE
        if hasattr(botocore.exceptions, name)
    )


def _is_not_found(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in NOT_FOUND_S3_CODES


def is_transient_s3(exc: BaseException) -> bool:
    """Whether the same S3 call may succeed later: the one place every boto3 failure is classified.

    - ClientError (S3 answered): by its code and HTTP status: 5xx, 408, 429, throttling and timeouts are
      transient; denied access, a missing bucket or key, a bad request are not.
    - boto3's own errors (a failed managed upload) wrap the botocore error that caused them: classified by
      that cause, transient when there is none.
    - botocore errors: configuration and parameter errors are permanent; every other one (refused or
      reset connections, connect/read timeouts, truncated bodies) is transient.
    - urllib3 and socket errors that slip through botocore are transient.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code not in PERMANENT_S3_CODES and (
            status >= 500
            or status in (0, 408, 429)
            or "Slow" in code
            or "Throttl" in code
            or "Timeout" in code
        )
    if isinstance(exc, Boto3Error):
        cause = exc.__cause__ or exc.__context__
        return True if cause is None or cause is exc else is_transient_s3(cause)
    if isinstance(exc, BotoCoreError):
        return not isinstance(exc, _permanent_botocore())
    return True  # urllib3 / OSError: connection refused, reset, timed out


def s3_error(message: str, exc: BaseException) -> StorageError:
    """A StorageError for a boto3 failure, transient unless a retry cannot change the outcome."""
    return StorageError(f"{message}: {type(exc).__name__}: {exc}", transient=is_transient_s3(exc))
