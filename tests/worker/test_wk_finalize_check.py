"""The finalizer trusts each shard's recorded sha256 (computed while writing) and checks presence and size
with one listing: a missing or truncated shard still fails the job, naming the shard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synthjobs.errors import JobFailure, ObjectNotFound
from synthjobs.storage.local import LocalStorage
from worker.pipelines.sample import check_shards_stored

JOB = "0f" * 16


def _stored(tmp_path: Path) -> tuple[LocalStorage, list[dict[str, Any]]]:
    storage = LocalStorage(tmp_path)
    rows = []
    for index in range(3):
        key = f"jobs/{JOB}/shard-{index:05d}.npz"
        storage.put_bytes(key, b"x" * (100 + index))
        rows.append({"index": index, "key": key, "bytes": 100 + index, "sha256": "not read"})
    return storage, rows


def test_shards_stored_with_their_recorded_sizes_pass_without_being_read(tmp_path: Path) -> None:
    storage, rows = _stored(tmp_path)
    storage.get_bytes = None  # type: ignore[assignment,method-assign]  # a read would fail the test
    storage.size_and_sha256 = None  # type: ignore[assignment,method-assign]
    check_shards_stored(storage, JOB, rows)


def test_a_missing_shard_fails_the_finalizer_by_name(tmp_path: Path) -> None:
    storage, rows = _stored(tmp_path)
    storage.delete(rows[1]["key"])
    with pytest.raises(ObjectNotFound, match="shard 1: no object"):
        check_shards_stored(storage, JOB, rows)


def test_a_truncated_shard_fails_the_finalizer_by_name(tmp_path: Path) -> None:
    storage, rows = _stored(tmp_path)
    storage.put_bytes(rows[2]["key"], b"x" * 7)
    with pytest.raises(JobFailure, match=r"shard 2 in storage \(7 bytes\) differs from its record"):
        check_shards_stored(storage, JOB, rows)
