"""A shard encoded and uploaded on its I/O thread while its next chunk is generated: same bytes, clean errors.

The reference is the whole-array path (`generate_shard` + `write_shard`, what the bare loop of
bench/sample_throughput.py does); `run_shard` with overlap on and off must both store exactly those bytes. An
upload that fails on the I/O thread must fail the shard through the task's own failure path with its reason,
leave no thread behind, and a retry must overwrite the same key with the right bytes.
"""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch

from synthjobs.errors import StorageError
from synthjobs.ledger import jobs, shards
from synthjobs.ledger.db import session_scope
from synthjobs.ledger.registry import register_model
from synthjobs.ledger.tables import JobShard, JobState, ShardState
from synthjobs.rules import sampling
from synthjobs.settings import Settings
from synthjobs.storage.local import LocalStorage
from synthjobs.storage.staged import PARTIAL_PREFIX, SpooledStage
from tests.support.worker_settings import worker_settings
from training.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.model import build_model
from training.sample import chunk_size
from worker.formats import EXTENSIONS, open_encoder, write_shard
from worker.pipelines import sample as sample_pipeline

CLASSES = [str(i) for i in range(10)]
SHAPE = (1, 8, 8)
COUNTS = [4000, 0, 3000, 5000, 500, 500, 1000, 1000, 1000, 1]  # 16,001: three decoder batches and a bit
FORMATS = sorted(EXTENSIONS)


def _checkpoint() -> bytes:
    cfg = TrainConfig(latent_dim=4, hidden_dim=32, architecture="mlp", epochs=1)
    torch.manual_seed(0)
    model = build_model(cfg, 64, 10, image_shape=SHAPE)
    return save_checkpoint(model, cfg, class_names=CLASSES, image_shape=SHAPE)


@pytest.fixture(scope="module")
def loaded() -> LoadedCheckpoint:
    return load_checkpoint(_checkpoint())


def _io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shard-io")]


def _reference(loaded: LoadedCheckpoint, params: dict[str, Any], index: int, counts: list[int]) -> bytes:
    images, labels = sample_pipeline.generate_shard(loaded, params, index, counts, torch.device("cpu"))
    buffer = io.BytesIO()
    write_shard(buffer, params.get("format", "npz"), images, labels, f"{params['job'][:8]}-{index:05d}")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunked_encoder_writes_the_whole_array_writers_bytes(fmt: str) -> None:
    rng = np.random.default_rng(3)
    for shape in [(8, 8), (28, 28), (32, 32, 3)]:
        for n in (0, 1, 7, 1001):
            images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            labels = rng.integers(0, 10, n)
            whole, streamed = io.BytesIO(), io.BytesIO()
            write_shard(whole, fmt, images, labels, "abc-00001")
            encoder = open_encoder(streamed, fmt, labels, shape, "abc-00001")
            for start in range(0, n, 300):
                encoder.add(images[start : start + 300])
            encoder.close()
            assert streamed.getvalue() == whole.getvalue(), (shape, n)


@pytest.mark.parametrize("fmt", FORMATS)
def test_encoder_refuses_a_shard_closed_short(fmt: str) -> None:
    encoder = open_encoder(io.BytesIO(), fmt, np.arange(3) % 10, (8, 8), "abc-00001")
    encoder.add(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="never added"):
        encoder.close()


def _run(
    loaded: LoadedCheckpoint, tmp_path: Path, storage: Any, fmt: str, *, overlap: bool, shuffle: bool = True
) -> dict[str, Any]:
    job_id = str(uuid.uuid4())
    model_id = f"model-{uuid.uuid4()}"
    sample_pipeline._models[(model_id, "cpu")] = loaded  # what load_model would have read from the ledger
    params = {"model_id": model_id, "seed": 11, "counts": COUNTS, "format": fmt, "shuffle": shuffle}
    row = JobShard(job_id=job_id, index=2, count=sum(COUNTS), per_class={"counts": COUNTS})
    settings = Settings(home=tmp_path / "home", sample_overlap=overlap)
    try:
        outcome = sample_pipeline.run_shard(row, params, settings, storage, torch.device("cpu"))
    finally:
        sample_pipeline._models.pop((model_id, "cpu"), None)
    return {"outcome": outcome, "params": {**params, "job": job_id}}


@pytest.mark.parametrize("fmt", FORMATS)
def test_shard_bytes_are_the_same_with_overlap_on_and_off(
    loaded: LoadedCheckpoint, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "training.sample.CHUNK_VALUES", 1
    )  # one decoder batch a chunk: 4 chunks, the last short
    assert sum(COUNTS) > 3 * chunk_size(SHAPE), "the shard must span several chunks"
    storage = LocalStorage(tmp_path / "store")
    stored = {}
    for overlap in (True, False):
        run = _run(loaded, tmp_path, storage, fmt, overlap=overlap)
        outcome = run["outcome"]
        data = storage.get_bytes(outcome["key"])
        assert (outcome["size"], outcome["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        # the job id is in webdataset member names: compare each run with its own whole-array reference
        assert data == _reference(loaded, run["params"], 2, COUNTS)
        stored[overlap] = (hashlib.sha256(data).hexdigest() if fmt == "npz" else None, outcome["quality"])
    assert stored[True] == stored[False]
    assert _io_threads() == []


class _FailingUpload(LocalStorage):
    """Stages shards as S3 does (a spool sent at commit), then writes part of one under its key and fails
    the upload (a connection dropped mid-body)."""

    def __init__(self, root: Path, error: Exception) -> None:
        super().__init__(root)
        self.error, self.calls = error, 0

    def stage(self, key: str, content_type: str = "application/octet-stream") -> SpooledStage:
        return SpooledStage(lambda stream, sha256: self.put_stream(key, stream, sha256=sha256))

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        self.calls += 1
        self.put_bytes(key, stream.read(1000))
        raise self.error


def test_an_upload_error_on_the_io_thread_is_raised_by_run_shard(
    loaded: LoadedCheckpoint, tmp_path: Path
) -> None:
    storage = _FailingUpload(tmp_path / "store", StorageError("bucket refused the shard", transient=True))
    with pytest.raises(StorageError, match="bucket refused the shard") as failure:
        _run(loaded, tmp_path, storage, "npz", overlap=True)
    assert failure.value.transient and storage.calls == 1
    assert _io_threads() == []


class _FailingRename(LocalStorage):
    """A local folder whose rename into place fails (a full or read-only disk at the last step)."""

    def stage(self, key: str, content_type: str = "application/octet-stream") -> Any:
        staged = super().stage(key, content_type)

        def commit(sha256: str | None = None) -> str:
            staged.file.close()
            raise StorageError("rename refused", transient=True)

        staged.commit = commit  # type: ignore[method-assign]
        return staged


@pytest.mark.parametrize("overlap", [True, False])
def test_a_shard_whose_commit_fails_leaves_no_partial_file_in_the_store(
    loaded: LoadedCheckpoint, tmp_path: Path, overlap: bool
) -> None:
    storage = _FailingRename(tmp_path / "store")
    with pytest.raises(StorageError, match="rename refused"):
        _run(loaded, tmp_path, storage, "webdataset", overlap=overlap)
    assert list((tmp_path / "store").rglob("*")) == [p for p in (tmp_path / "store").rglob("*") if p.is_dir()]
    assert _io_threads() == []


def test_a_shard_is_written_in_place_and_renamed_into_the_local_store(
    loaded: LoadedCheckpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    storage = LocalStorage(tmp_path / "store")
    real_add = sample_pipeline.ShardIO.add

    def add(self: Any, images: np.ndarray) -> None:
        real_add(self, images)
        seen.extend(p.name for p in (tmp_path / "store").rglob(f"{PARTIAL_PREFIX}*"))

    monkeypatch.setattr(sample_pipeline.ShardIO, "add", add)
    outcome = _run(loaded, tmp_path, storage, "webdataset", overlap=False)["outcome"]
    assert seen, "the shard's file is written inside the store, beside its key"
    assert storage.list_keys("jobs") == [outcome["key"]]
    assert list((tmp_path / "store").rglob(f"{PARTIAL_PREFIX}*")) == []


def test_an_encoding_error_on_the_io_thread_is_raised_by_run_shard(
    loaded: LoadedCheckpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_png(pixels: np.ndarray) -> bytes:
        raise RuntimeError("png encoder broke")

    monkeypatch.setattr("worker.formats.encode_png", broken_png)
    storage = LocalStorage(tmp_path / "store")
    with pytest.raises(RuntimeError, match="png encoder broke"):
        _run(loaded, tmp_path, storage, "webdataset", overlap=True)
    assert storage.list_keys("jobs") == [] and _io_threads() == []
    assert list((tmp_path / "store").rglob(f"{PARTIAL_PREFIX}*")) == []


# --- through the task: the shard's state transitions on a real ledger -------------------------------------


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, postgres_url: str) -> Iterator[Settings]:
    yield from worker_settings(monkeypatch, tmp_path, postgres_url, MAX_ATTEMPTS="3")


def _sampling_job(settings: Settings) -> tuple[str, dict[str, Any]]:
    storage = LocalStorage(tmp_root := Path(settings.resolved_storage_url().removeprefix("file://")))
    model_id = str(uuid.uuid4())
    uri = storage.put_bytes(f"models/{model_id}/model.pt", _checkpoint())
    assert tmp_root.exists()
    with session_scope(settings.resolved_database_url()) as session:
        model = register_model(
            session,
            model_id=model_id,
            name="overlap-test",
            training_job_id=None,
            checkpoint_uri=uri,
            hyperparameters={},
            metrics={},
            dataset={"class_names": CLASSES, "image_shape": list(SHAPE)},
        )
        request = {"model": model.id, "per_class": 3000, "seed": 5, "shard_size": 30_000}
        params = sampling.sample_params(request, model, settings)
        job, _ = shards.create_sampling_job(session, params, tenant="default")
        return job.id, dict(job.params)


def _claim(settings: Settings, job_id: str, worker: str) -> JobShard:
    with session_scope(settings.resolved_database_url()) as session:
        row = shards.claim_shard(session, job_id, 0, worker, settings.lease_seconds, settings.max_attempts)
        assert row is not None
        session.expunge(row)
        return row


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The task's publishing, recorded instead of sent: the broker and the dispatcher are not under test."""
    from worker import tasks

    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        tasks, "enqueue_shards", lambda app, job_id, idx, s, countdown=None: sent.append(("retry", idx))
    )
    monkeypatch.setattr(tasks, "dispatch_shards", lambda app, s: sent.append(("dispatch", None)))
    monkeypatch.setattr(tasks, "publish_released", lambda app, released, s: sent.append(("released", None)))
    monkeypatch.setattr(tasks, "finalize_sample", lambda job_id: sent.append(("finalize", job_id)))
    monkeypatch.setattr(tasks, "enqueue_finalizer", lambda app, job_id, s: sent.append(("finalize", job_id)))
    return sent


def _run_task(settings: Settings, job_id: str, params: dict[str, Any], worker: str) -> None:
    """The shard task's body, then its tail (on the hand-off thread with overlap on) to its end."""
    from worker import tasks

    tasks._run_shard(_claim(settings, job_id, worker), params, settings, worker)
    assert tasks.HANDOFF.drain(timeout=60)


def _shard_row(settings: Settings, job_id: str) -> tuple[JobShard, str]:
    with session_scope(settings.resolved_database_url()) as session:
        row = shards.list_shards(session, job_id)[0]
        session.expunge(row)
        return row, jobs.get_job(session, job_id).state


def test_a_failed_upload_gives_the_shard_back_and_the_retry_overwrites_its_key(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, published: list[tuple[str, Any]]
) -> None:
    from worker import tasks

    job_id, params = _sampling_job(settings)
    root = Path(settings.resolved_storage_url().removeprefix("file://"))
    failing = _FailingUpload(root, RuntimeError("connection reset mid-upload"))
    monkeypatch.setattr(tasks, "open_storage", lambda s: failing)
    _run_task(settings, job_id, params, "first:1")

    row, state = _shard_row(settings, job_id)
    assert failing.calls == 1 and _io_threads() == []
    assert (row.state, row.worker, row.key) == (ShardState.PENDING.value, None, None)
    assert row.error is not None and "internal error" in row.error and state == JobState.RUNNING.value
    partial = failing.get_bytes(sample_pipeline.shards.shard_key(job_id, 0, "npz"))
    assert len(partial) == 1000  # the broken upload left a partial object under the shard's key
    assert ("retry", [0]) in published

    monkeypatch.setattr(tasks, "open_storage", lambda s: LocalStorage(root))
    _run_task(settings, job_id, params, "second:1")
    row, _ = _shard_row(settings, job_id)
    assert (row.state, row.worker) == (ShardState.DONE.value, "second:1")
    data = LocalStorage(root).get_bytes(row.key or "")
    assert (row.bytes, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    loaded = sample_pipeline.load_model(settings, LocalStorage(root), params["model_id"], torch.device("cpu"))
    assert data == _reference(loaded, {**params, "job": job_id}, 0, list(row.per_class["counts"]))
    assert ("finalize", job_id) in published  # its only shard is done


def test_an_upload_failing_on_every_attempt_fails_the_shard_and_its_job(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    published: list[tuple[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from worker import tasks

    job_id, params = _sampling_job(settings)
    root = Path(settings.resolved_storage_url().removeprefix("file://"))
    failing = _FailingUpload(root, RuntimeError("the output bucket hung up"))
    monkeypatch.setattr(tasks, "open_storage", lambda s: failing)
    for attempt in range(1, settings.max_attempts + 1):
        _run_task(settings, job_id, params, f"w{attempt}:1")

    row, state = _shard_row(settings, job_id)
    assert failing.calls == settings.max_attempts and _io_threads() == []
    assert row.state == ShardState.FAILED.value and state == JobState.FAILED.value
    assert row.error is not None and f"(after {settings.max_attempts} attempts)" in row.error
    reference = row.error.split("reference ")[1].split(")")[0]
    logged = [r for r in caplog.records if reference in r.getMessage()]
    assert logged and logged[0].exc_info and "the output bucket hung up" in str(logged[0].exc_info[1])


class _HeldCommit(LocalStorage):
    """A local folder whose commits wait for `release`: an upload still on the wire."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release, self.committing = threading.Event(), threading.Event()

    def stage(self, key: str, content_type: str = "application/octet-stream") -> Any:
        staged = super().stage(key, content_type)
        commit = staged.commit

        def held(sha256: str | None = None) -> str:
            self.committing.set()
            assert self.release.wait(30), "the test never released the upload"
            return commit(sha256)

        staged.commit = held  # type: ignore[method-assign]
        return staged


def test_with_overlap_the_task_returns_during_its_upload_and_the_shard_is_done_only_after_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, published: list[tuple[str, Any]]
) -> None:
    from synthjobs.ledger import deletion
    from worker import tasks

    job_id, params = _sampling_job(settings)
    held = _HeldCommit(Path(settings.resolved_storage_url().removeprefix("file://")))
    monkeypatch.setattr(tasks, "open_storage", lambda s: held)
    tasks._run_shard(
        _claim(settings, job_id, "w:1"), params, settings, "w:1"
    )  # returns: its tail is handed off
    try:
        assert held.committing.wait(30)
        row, _ = _shard_row(settings, job_id)
        assert (row.state, row.worker, row.key) == (ShardState.RUNNING.value, "w:1", None)
        assert held.list_keys(f"jobs/{job_id}") == [] and published == []
        with session_scope(settings.resolved_database_url()) as session:  # a deletion waits for it
            assert deletion.may_still_write(session, jobs.get_job(session, job_id), grace_seconds=0)
    finally:
        held.release.set()
    assert tasks.HANDOFF.drain(timeout=60)
    row, _ = _shard_row(settings, job_id)
    assert row.state == ShardState.DONE.value and held.list_keys(f"jobs/{job_id}") == [row.key]
    assert ("finalize", job_id) in published  # its only shard: the finalizer is sent as a task


def test_with_overlap_off_the_task_records_its_shard_before_it_returns(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, published: list[tuple[str, Any]]
) -> None:
    from worker import tasks

    job_id, params = _sampling_job(settings)
    inline = settings.model_copy(update={"sample_overlap": False})
    tasks._run_shard(_claim(inline, job_id, "w:1"), params, inline, "w:1")
    row, _ = _shard_row(settings, job_id)
    assert row.state == ShardState.DONE.value and ("finalize", job_id) in published
