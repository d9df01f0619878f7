"""Object storage: one contract, checked on a local folder and on S3 over HTTP (moto's server)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from pathlib import Path

import botocore.endpoint
import pytest
from pydantic import SecretStr

from synthjobs import retry
from synthjobs.devtools import processes
from synthjobs.errors import InvalidKey, ObjectNotFound, StorageError
from synthjobs.settings import Settings
from synthjobs.storage import open_storage
from synthjobs.storage import retry as storage_retry
from synthjobs.storage.base import Storage, validate_key
from synthjobs.storage.local import LocalStorage
from synthjobs.storage.retry import RetryingStorage
from synthjobs.storage.s3 import S3Storage, is_transient_s3, s3_error

SHARD_KEY = "jobs/767f0800-ec24-461e-8448-78a4d54787cb/shard-00001.npz"  # fixed: xdist workers collect alike


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The same interface on each backend: a folder under tmp_path, or a prefix in a fresh bucket."""
    if request.param == "local":
        return open_storage(Settings(home=tmp_path, storage_url=(tmp_path / "store").as_uri()))
    endpoint, bucket = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_bucket")
    return open_storage(Settings(storage_url=f"s3://{bucket}/prefix", s3_endpoint_url=endpoint))


def test_put_then_get_returns_the_same_bytes(storage: Storage) -> None:
    data = bytes(range(256)) * 10
    uri = storage.put_bytes(SHARD_KEY, data)
    assert storage.get_bytes(SHARD_KEY) == data
    assert uri == storage.uri(SHARD_KEY)


def test_put_overwrites_an_existing_object(storage: Storage) -> None:
    storage.put_bytes("models/m/model.pt", b"first attempt, longer content")
    storage.put_bytes("models/m/model.pt", b"retry")
    assert storage.get_bytes("models/m/model.pt") == b"retry"
    assert storage.list_keys("models") == ["models/m/model.pt"]


def test_exists_only_after_put(storage: Storage) -> None:
    assert storage.exists(SHARD_KEY) is False
    storage.put_bytes(SHARD_KEY, b"x")
    assert storage.exists(SHARD_KEY) is True


def test_empty_object_round_trips(storage: Storage) -> None:
    storage.put_bytes("jobs/j/empty.json", b"")
    assert storage.exists("jobs/j/empty.json") and storage.get_bytes("jobs/j/empty.json") == b""


def test_list_keys_is_sorted_and_relative_to_the_storage_root(storage: Storage) -> None:
    for key in ["jobs/b/shard-00002.npz", "jobs/b/shard-00001.npz", "jobs/a/manifest.json", "models/m/x.pt"]:
        storage.put_bytes(key, b"x")
    assert storage.list_keys("jobs/b") == ["jobs/b/shard-00001.npz", "jobs/b/shard-00002.npz"]
    assert storage.list_keys("jobs/b/") == ["jobs/b/shard-00001.npz", "jobs/b/shard-00002.npz"]
    assert storage.list_keys("jobs") == [
        "jobs/a/manifest.json",
        "jobs/b/shard-00001.npz",
        "jobs/b/shard-00002.npz",
    ]
    assert storage.list_keys("") == storage.list_keys("jobs") + ["models/m/x.pt"]
    assert storage.list_keys("jobs/missing") == []


def test_uri_and_key_of_round_trip(storage: Storage) -> None:
    uri = storage.uri(SHARD_KEY)
    assert uri.startswith(storage.url + "/") and uri.endswith(SHARD_KEY)
    assert storage.key_of(uri) == SHARD_KEY


def test_key_of_refuses_a_uri_of_another_root(storage: Storage) -> None:
    own = storage.uri(SHARD_KEY)
    foreign = [
        "file:///elsewhere/" + SHARD_KEY,
        "s3://another-bucket/prefix/" + SHARD_KEY,
        storage.url + "2/" + SHARD_KEY,  # a sibling root whose name starts with ours
        storage.url,
        own.replace(SHARD_KEY, "jobs/../../secret"),
        SHARD_KEY,
    ]
    for uri in foreign:
        with pytest.raises(InvalidKey):
            storage.key_of(uri)


def test_get_of_a_missing_key_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.get_bytes(SHARD_KEY)


@pytest.mark.parametrize("key", ["../x", "a/../b", "/abs", "jobs/a//b"])
def test_every_operation_refuses_an_invalid_key(storage: Storage, key: str) -> None:
    for operation in (
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.get_bytes(key),
        lambda: storage.exists(key),
        lambda: storage.uri(key),
    ):
        with pytest.raises(InvalidKey):
            operation()


def test_check_passes_on_a_reachable_store(storage: Storage) -> None:
    storage.check()
    assert storage.list_keys("") == []  # the health probe leaves nothing behind


@pytest.mark.parametrize("storage", ["local"], indirect=True)
def test_get_of_a_key_that_is_only_a_prefix_raises_object_not_found(storage: Storage) -> None:
    storage.put_bytes("jobs/a/b", b"x")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("jobs/a")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("jobs/a/b/c")


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_s3_get_of_a_key_that_is_only_a_prefix_raises_object_not_found(storage: Storage) -> None:
    storage.put_bytes("jobs/a/b", b"x")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("jobs/a")


# --- Local folder only ----------------------------------------------------------------------------------


def test_open_storage_defaults_to_a_folder_under_home(tmp_path: Path) -> None:
    storage = open_storage(Settings(home=tmp_path))
    assert isinstance(storage, LocalStorage)
    assert storage.root == (tmp_path / "storage").resolve()
    assert storage.url == (tmp_path / "storage").resolve().as_uri()


def test_local_objects_live_under_the_root_and_leave_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put_bytes(SHARD_KEY, b"abc")
    storage.put_bytes(SHARD_KEY, b"abcd")
    assert (tmp_path / "store" / SHARD_KEY).read_bytes() == b"abcd"
    assert [p.name for p in (tmp_path / "store" / SHARD_KEY).parent.iterdir()] == ["shard-00001.npz"]


def test_local_list_keys_ignores_half_written_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put_bytes("jobs/j/a.npz", b"x")
    (tmp_path / "store" / "jobs" / "j" / ".tmp-abc123").write_bytes(b"partial")
    assert storage.list_keys("jobs") == ["jobs/j/a.npz"]


@pytest.mark.parametrize("prefix", ["..", "../", "jobs/../.."])
def test_local_list_keys_refuses_a_prefix_outside_the_root(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        LocalStorage(tmp_path / "store").list_keys(prefix)


def test_local_check_fails_with_storage_error_when_the_root_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(StorageError, match="not writable"):
        LocalStorage(tmp_path / "a-file" / "store").check()


# --- S3 only --------------------------------------------------------------------------------------------


def test_s3_objects_are_stored_under_the_prefix(s3_endpoint: str, s3_bucket: str, s3_client) -> None:  # type: ignore[no-untyped-def]
    storage = open_storage(Settings(storage_url=f"s3://{s3_bucket}/prefix/", s3_endpoint_url=s3_endpoint))
    assert isinstance(storage, S3Storage) and storage.url == f"s3://{s3_bucket}/prefix"
    uri = storage.put_bytes(SHARD_KEY, b"payload", content_type="application/x-npz")
    assert uri == f"s3://{s3_bucket}/prefix/{SHARD_KEY}"
    head = s3_client.head_object(Bucket=s3_bucket, Key=f"prefix/{SHARD_KEY}")
    assert head["ContentType"] == "application/x-npz" and head["ContentLength"] == 7
    s3_client.put_object(Bucket=s3_bucket, Key="prefix2/jobs/x", Body=b"not ours")
    s3_client.put_object(Bucket=s3_bucket, Key="jobs/y", Body=b"not ours")
    assert storage.list_keys("") == [SHARD_KEY]
    assert storage.list_keys("jobs") == [SHARD_KEY]


def test_s3_without_a_prefix_uses_the_bucket_root(s3_endpoint: str, s3_bucket: str, s3_client) -> None:  # type: ignore[no-untyped-def]
    storage = open_storage(Settings(storage_url=f"s3://{s3_bucket}", s3_endpoint_url=s3_endpoint))
    assert storage.uri("a/b") == f"s3://{s3_bucket}/a/b"
    storage.put_bytes("a/b", b"1")
    assert s3_client.get_object(Bucket=s3_bucket, Key="a/b")["Body"].read() == b"1"
    assert storage.list_keys("a") == ["a/b"] and storage.key_of(f"s3://{s3_bucket}/a/b") == "a/b"


def test_s3_check_fails_with_storage_error_for_a_missing_bucket(s3_endpoint: str) -> None:
    storage = open_storage(
        Settings(storage_url="s3://no-such-bucket-synthjobs/x", s3_endpoint_url=s3_endpoint)
    )
    with pytest.raises(StorageError, match="no-such-bucket-synthjobs"):
        storage.check()


def test_s3_get_from_a_missing_bucket_raises_storage_error(s3_endpoint: str) -> None:
    storage = open_storage(
        Settings(storage_url="s3://no-such-bucket-synthjobs/x", s3_endpoint_url=s3_endpoint)
    )
    with pytest.raises(StorageError):
        storage.get_bytes(SHARD_KEY)
    with pytest.raises(StorageError):
        storage.put_bytes(SHARD_KEY, b"x")


# --- URLs and keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///prefix", "gs://bucket/x", "http://example.com/x", "bucket/x"]
)
def test_open_storage_refuses_an_unsupported_url(url: str) -> None:
    with pytest.raises(ValueError):
        open_storage(Settings(storage_url=url))


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../b",
        "/abs",
        "a//b",
        "a/",
        "%2e%2e/x",
        "jobs/a\x00b",
        "x" * 5000,
        "",
        ".",
        "..",
        "jobs/.hidden",
        "jobs/a b",
        "jobs\\..\\x",
        "jobs/" + "x" * 201,
    ],
)
def test_validate_key_refuses_keys_that_could_leave_the_root(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


def test_validate_key_refuses_a_trailing_newline() -> None:
    with pytest.raises(InvalidKey):
        validate_key("jobs/x\n")


@pytest.mark.parametrize(
    "key", [SHARD_KEY, "models/m/model.pt", "a", "jobs/x/manifest.json", "a/" * 300 + "b", "x" * 200]
)
def test_validate_key_accepts_keys_the_service_builds(key: str) -> None:
    assert validate_key(key) == key


def test_invalid_key_is_both_a_storage_error_and_a_value_error() -> None:
    with pytest.raises(StorageError):
        validate_key("../x")
    with pytest.raises(ValueError):
        validate_key("../x")


# --- S3 failures: classified in one place, retried by one layer (botocore's) -----------------------------

S3_ATTEMPTS = 3


def _s3_on_a_refused_port(monkeypatch: pytest.MonkeyPatch) -> tuple[S3Storage, list[str], list[float]]:
    """An S3Storage whose endpoint is a free local port with nothing listening, its HTTP attempts, and the
    backoff botocore asked for between them (recorded, not slept)."""
    endpoint = f"http://127.0.0.1:{processes.free_port()}"
    settings = Settings(
        s3_endpoint_url=endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_connect_timeout=1,
        s3_max_attempts=S3_ATTEMPTS,
    )
    slept: list[float] = []
    monkeypatch.setattr(botocore.endpoint.time, "sleep", slept.append)
    storage = S3Storage("bucket", "prefix", settings)
    attempts: list[str] = []
    storage.client.meta.events.register("before-send", lambda request, **_: attempts.append(request.url))
    return storage, attempts, slept


def _every_operation(storage: Storage) -> dict[str, Callable[[], object]]:
    return {
        "put_bytes": lambda: storage.put_bytes(SHARD_KEY, b"x"),
        "put_stream": lambda: storage.put_stream(SHARD_KEY, io.BytesIO(b"x")),
        "get_bytes": lambda: storage.get_bytes(SHARD_KEY),
        "exists": lambda: storage.exists(SHARD_KEY),
        "list_keys": lambda: storage.list_keys("jobs"),
        "size_and_sha256": lambda: storage.size_and_sha256(SHARD_KEY),
        "delete": lambda: storage.delete(SHARD_KEY),
        "check": storage.check,
    }


def test_s3_refused_connection_is_retried_by_botocore_then_a_transient_storage_error_for_every_operation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore's standard mode owns S3's retries (it used to be off, with RetryingStorage retrying)."""
    storage, attempts, slept = _s3_on_a_refused_port(monkeypatch)
    for name, operation in _every_operation(storage).items():
        attempts.clear()
        slept.clear()
        with pytest.raises(StorageError) as raised:
            operation()
        assert raised.value.transient, name
        assert "EndpointConnectionError" in str(raised.value), name
        assert len(attempts) == S3_ATTEMPTS, f"{name}: {len(attempts)} HTTP attempts"
        assert len(slept) == S3_ATTEMPTS - 1 and all(0 <= s <= 2**i for i, s in enumerate(slept)), name


def test_retrying_storage_adds_no_retries_on_top_of_botocore_for_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    """One retry layer: a call through RetryingStorage costs S3's own attempts, not attempts x attempts."""
    tenacity_slept: list[float] = []
    inner, attempts, _ = _s3_on_a_refused_port(monkeypatch)
    monkeypatch.setattr(storage_retry, "retry_transient", lambda *a, **k: tenacity_slept.append(0.0))
    storage = RetryingStorage(inner)
    for name, operation in _every_operation(storage).items():
        attempts.clear()
        with pytest.raises(StorageError) as raised:
            operation()
        assert raised.value.transient, name
        assert len(attempts) == S3_ATTEMPTS, f"{name}: {len(attempts)} HTTP attempts"
    assert tenacity_slept == []


def test_retrying_storage_retries_local_storage_transient_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)

    class FlakyLocal(LocalStorage):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.failures = 2

        def get_bytes(self, key: str) -> bytes:
            if self.failures:
                self.failures -= 1
                raise TimeoutError("NFS server not responding")
            return super().get_bytes(key)

    inner = FlakyLocal(tmp_path)
    inner.put_bytes(SHARD_KEY, b"x")
    assert RetryingStorage(inner, attempts=3, deadline=5).get_bytes(SHARD_KEY) == b"x"
    assert inner.failures == 0 and len(slept) == 2


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def test_s3_errors_are_classified_transient_only_when_a_retry_can_help() -> None:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    transient = [
        EndpointConnectionError(endpoint_url="http://x"),
        ConnectionClosedError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ResponseStreamingError(error="reset"),
        _client_error("SlowDown", 503),
        _client_error("InternalError", 500),
        _client_error("RequestTimeout", 400),
        ConnectionResetError(),
    ]
    permanent = [
        NoCredentialsError(),
        ParamValidationError(report="bad"),
        _client_error("AccessDenied", 403),
        _client_error("NoSuchBucket", 404),
        _client_error("InvalidArgument", 400),
    ]
    for exc in transient:
        assert is_transient_s3(exc) and s3_error("op", exc).transient, repr(exc)
    for exc in permanent:
        assert not is_transient_s3(exc) and not s3_error("op", exc).transient, repr(exc)

    def upload_failed(cause: Exception) -> Exception:
        try:
            raise cause
        except Exception:
            try:
                raise S3UploadFailedError("Failed to upload")  # as boto3 raises it, inside `except`
            except S3UploadFailedError as wrapped:
                return wrapped

    assert not is_transient_s3(upload_failed(_client_error("AccessDenied", 403)))
    assert is_transient_s3(upload_failed(_client_error("SlowDown", 503)))


def test_delete_prefix_removes_the_folder_and_reports_it_but_spares_a_sibling(storage: Storage) -> None:
    job = str(uuid.uuid4())
    mine = [f"jobs/{job}/shard-00000.npz", f"jobs/{job}/shard-00001.npz", f"jobs/{job}/train-state/a.pt"]
    sibling = f"jobs/{job}x/shard-00000.npz"  # shares the text prefix, not the folder
    for size, key in enumerate([*mine, sibling], start=1):
        storage.put_bytes(key, b"x" * size)
    assert storage.list_objects(f"jobs/{job}/") == [(k, n) for n, k in enumerate(mine, start=1)]
    removed = storage.delete_prefix(f"jobs/{job}/")
    assert sorted(removed) == [(k, n) for n, k in enumerate(mine, start=1)]
    assert storage.list_keys(f"jobs/{job}/") == [] and storage.exists(sibling)
    assert storage.delete_prefix(f"jobs/{job}/") == [], "deleting again is harmless"


@pytest.mark.parametrize("prefix", ["", "/", "jobs", "jobs/abc", "../jobs/", "jobs/../"])
def test_delete_prefix_refuses_anything_but_a_folder_of_plain_segments(storage: Storage, prefix: str) -> None:
    storage.put_bytes("jobs/abc/x.npz", b"x")
    with pytest.raises(InvalidKey):
        storage.delete_prefix(prefix)
    assert storage.exists("jobs/abc/x.npz")


def test_s3_delete_keys_goes_in_batches_and_leaves_nothing(
    s3_endpoint: str, s3_bucket: str, s3_client, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import synthjobs.storage.s3 as storage_module

    monkeypatch.setattr(storage_module, "S3_DELETE_BATCH", 2)  # 7 keys: four DeleteObjects requests
    storage = open_storage(Settings(storage_url=f"s3://{s3_bucket}/pfx", s3_endpoint_url=s3_endpoint))
    keys = [f"jobs/j1/shard-{i:05d}.npz" for i in range(7)]
    for key in keys:
        storage.put_bytes(key, b"data")
    assert [k for k, _ in storage.delete_prefix("jobs/j1/")] == keys
    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="pfx/jobs/j1/").get("KeyCount") == 0


@pytest.mark.parametrize("backend", ["s3", "retrying s3"])
def test_s3_put_stream_sends_the_callers_sha256_as_the_checksum_s3_verifies(
    s3_endpoint: str, s3_bucket: str, backend: str
) -> None:
    """AWS refuses a body whose x-amz-checksum-sha256 differs (moto stores it unchecked, so the header is
    what is checked here): given the caller's digest, that digest is sent, not one botocore recomputed."""
    import base64
    import hashlib

    s3 = open_storage(Settings(storage_url=f"s3://{s3_bucket}/prefix", s3_endpoint_url=s3_endpoint))
    assert isinstance(s3, S3Storage)
    sent: list[str | None] = []

    def record(request, **kwargs) -> None:  # type: ignore[no-untyped-def]
        value = request.headers.get("x-amz-checksum-sha256")
        sent.append(value.decode() if isinstance(value, bytes) else value)

    s3.client.meta.events.register("before-send.s3.PutObject", record)
    storage: Storage = RetryingStorage(s3) if backend == "retrying s3" else s3
    body = b"shard bytes " * 1000
    storage.put_stream(SHARD_KEY, io.BytesIO(body))  # no digest given: botocore computes it
    storage.put_stream(SHARD_KEY, io.BytesIO(body), sha256=hashlib.sha256(body).hexdigest())
    storage.put_stream(SHARD_KEY, io.BytesIO(body), sha256=hashlib.sha256(b"other").hexdigest())
    expected = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert sent == [expected, expected, base64.b64encode(hashlib.sha256(b"other").digest()).decode()]
    assert storage.get_bytes(SHARD_KEY) == body


# --- staged objects: written in place, visible only once committed ------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_staged_object_is_invisible_until_committed_then_stored(storage: Storage, wrapped: bool) -> None:
    store: Storage = RetryingStorage(storage) if wrapped else storage
    staged = store.stage(SHARD_KEY)
    staged.file.write(b"header" + b"x" * 100)
    staged.file.seek(0)
    staged.file.write(b"HEADER")  # a format that patches what it wrote (zip) may seek back
    staged.file.seek(0, io.SEEK_END)
    assert store.list_keys("jobs") == [] and not store.exists(SHARD_KEY)
    assert staged.commit() == store.uri(SHARD_KEY)
    assert store.get_bytes(SHARD_KEY) == b"HEADER" + b"x" * 100
    staged.abort()  # after a commit: nothing to drop
    assert store.list_objects("jobs") == [(SHARD_KEY, 106)]


def test_an_aborted_staged_object_leaves_nothing_and_keeps_the_object_before_it(storage: Storage) -> None:
    storage.put_bytes(SHARD_KEY, b"first attempt")
    staged = storage.stage(SHARD_KEY)
    staged.file.write(b"half a retry")
    staged.abort()
    assert storage.get_bytes(SHARD_KEY) == b"first attempt"
    assert storage.list_keys("jobs") == [SHARD_KEY]


def test_local_staged_object_is_written_beside_its_key_and_renamed(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    staged = storage.stage(SHARD_KEY)
    staged.file.write(b"abc")
    staged.file.flush()
    partials = list((tmp_path / SHARD_KEY).parent.glob(".tmp-*"))
    assert len(partials) == 1 and partials[0].read_bytes() == b"abc"  # in place: no copy at commit
    staged.commit()
    assert list(tmp_path.rglob(".tmp-*")) == [] and (tmp_path / SHARD_KEY).read_bytes() == b"abc"


def test_local_sweep_removes_only_partials_left_long_enough(tmp_path: Path) -> None:
    import os
    import time

    storage = LocalStorage(tmp_path)
    storage.put_bytes(SHARD_KEY, b"done")
    left = storage.stage(SHARD_KEY)  # a writer killed mid-write: never committed nor aborted
    left.file.write(b"partial")
    left.file.flush()
    live = storage.stage("jobs/767f0800-ec24-461e-8448-78a4d54787cb/shard-00002.npz")
    live.file.write(b"being written")
    live.file.flush()
    (old,) = [p for p in tmp_path.rglob(".tmp-*") if p.read_bytes() == b"partial"]
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    other_job = storage.stage("jobs/other/shard-00000.npz")
    other_job.file.write(b"another job's")
    other_job.file.flush()
    assert storage.sweep_partials("jobs/767f0800-ec24-461e-8448-78a4d54787cb/", older_than=600) == 1
    assert not old.exists() and storage.get_bytes(SHARD_KEY) == b"done"
    live.commit()  # a live writer's file was spared
    assert storage.list_keys("jobs/767f0800-ec24-461e-8448-78a4d54787cb") == [
        SHARD_KEY,
        "jobs/767f0800-ec24-461e-8448-78a4d54787cb/shard-00002.npz",
    ]
    assert len(list((tmp_path / "jobs/other").glob(".tmp-*"))) == 1


def test_local_delete_prefix_removes_partials_and_the_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes(SHARD_KEY, b"done")
    left = storage.stage("jobs/767f0800-ec24-461e-8448-78a4d54787cb/shard-00002.npz")
    left.file.write(b"partial of a killed writer")
    left.file.flush()
    removed = storage.delete_prefix("jobs/767f0800-ec24-461e-8448-78a4d54787cb/")
    assert removed == [(SHARD_KEY, 4)]
    assert not (tmp_path / "jobs/767f0800-ec24-461e-8448-78a4d54787cb").exists()


@pytest.mark.parametrize("storage", ["s3"], indirect=True)
def test_s3_sweep_has_nothing_to_remove(storage: Storage) -> None:
    staged = storage.stage(SHARD_KEY)
    staged.file.write(b"x")
    assert storage.sweep_partials("jobs/", older_than=0) == 0
    staged.abort()
    assert storage.list_keys("jobs") == []


def test_retrying_storage_retries_a_local_commit_that_failed_transiently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthjobs.storage import local

    slept: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    real_replace, failures = local.os.replace, [TimeoutError("NFS server not responding")]

    def flaky_replace(src: str, dst: str) -> None:
        if failures:
            raise failures.pop()
        real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", flaky_replace)
    staged = RetryingStorage(LocalStorage(tmp_path), attempts=3, deadline=5).stage(SHARD_KEY)
    staged.file.write(b"shard")
    staged.commit()
    assert (tmp_path / SHARD_KEY).read_bytes() == b"shard" and len(slept) == 1


def test_s3_storages_of_the_same_settings_share_one_client_and_other_settings_get_their_own(
    s3_endpoint: str, s3_bucket: str
) -> None:
    settings = Settings(storage_url=f"s3://{s3_bucket}/prefix", s3_endpoint_url=s3_endpoint)
    first, second = open_storage(settings), open_storage(settings)
    assert isinstance(first, S3Storage) and isinstance(second, S3Storage)
    assert first.client is second.client  # a worker opens its storage per shard: no new client each time
    fewer = open_storage(settings, s3_max_attempts=2)
    other = {"s3_access_key_id": SecretStr("other-key"), "s3_secret_access_key": SecretStr("other-secret")}
    keyed = open_storage(settings.model_copy(update=other))
    assert isinstance(fewer, S3Storage) and isinstance(keyed, S3Storage)
    assert len({id(first.client), id(fewer.client), id(keyed.client)}) == 3
    first.put_bytes(SHARD_KEY, b"shared")
    assert second.get_bytes(SHARD_KEY) == b"shared"


def test_write_sliced_writes_every_byte_in_slices_no_bigger_than_the_limit() -> None:
    from synthjobs.storage.staged import WRITE_SLICE, write_sliced

    class Recording(io.BytesIO):
        sizes: list[int] = []

        def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
            self.sizes.append(len(data))
            return super().write(data)

    data = bytes(range(256)) * (3 * WRITE_SLICE // 256 + 7)
    out = Recording()
    assert write_sliced(out, memoryview(data)) == len(data)
    assert out.getvalue() == data and max(out.sizes) <= WRITE_SLICE and len(out.sizes) == 4
