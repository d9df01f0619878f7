"""Output shards are byte-for-byte functions of their input, so a retried shard equals its first try.

Each format in `worker.formats` is written twice from the same arrays with the clock moved in between (zip
and tar both stamp members with the time unless told otherwise): the bytes must not change.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

import numpy as np
import pytest

from training.sample import encode_png
from worker.formats import EXTENSIONS, write_shard

FORMATS = sorted(EXTENSIONS)


def _shard() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (5, 8, 8), dtype=np.uint8), rng.integers(0, 10, 5)


def _write(fmt: str, images: np.ndarray, labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    write_shard(buffer, fmt, images, labels, "job-00003")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_shard_input_gives_byte_identical_output_at_any_time(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = _shard()
    first = _write(fmt, images, labels)
    later = time.time() + 86_400 * 400  # a retry a year and a bit later, on another day and second
    monkeypatch.setattr(time, "time", lambda: later)
    assert _write(fmt, images, labels) == first


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_different_label_changes_the_bytes(fmt: str) -> None:
    images, labels = _shard()
    changed = labels.copy()
    changed[0] = (changed[0] + 1) % 10
    assert _write(fmt, images, changed) != _write(fmt, images, labels)


def test_npz_shard_reads_back_as_the_arrays_written() -> None:
    images, labels = _shard()
    with np.load(io.BytesIO(_write("npz", images, labels)), allow_pickle=False) as archive:
        assert sorted(archive.files) == ["images", "labels"]
        np.testing.assert_array_equal(archive["images"], images)
        assert archive["labels"].dtype == np.int64
        np.testing.assert_array_equal(archive["labels"], labels)


def test_webdataset_shard_holds_png_and_cls_pairs_in_order_without_owner_or_time() -> None:
    images, labels = _shard()
    with tarfile.open(fileobj=io.BytesIO(_write("webdataset", images, labels))) as archive:
        members = archive.getmembers()
        assert [m.name for m in members[:4]] == [
            "job-00003-0000000.png",
            "job-00003-0000000.cls",
            "job-00003-0000001.png",
            "job-00003-0000001.cls",
        ]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            png = archive.extractfile(f"job-00003-{i:07d}.png")
            cls = archive.extractfile(f"job-00003-{i:07d}.cls")
            assert png is not None and cls is not None
            assert png.read() == encode_png(image)
            assert cls.read() == str(int(label)).encode()


def test_an_unknown_format_is_refused() -> None:
    images, labels = _shard()
    with pytest.raises(ValueError, match="unknown output format 'parquet'"):
        _write("parquet", images, labels)


def _tarfile_reference(images: np.ndarray, labels: np.ndarray, prefix: str) -> bytes:
    """The webdataset shard as `tarfile` itself writes it (the writer before its header template)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            for name, payload in (
                (f"{prefix}-{i:07d}.png", encode_png(image)),
                (f"{prefix}-{i:07d}.cls", str(int(label)).encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode, info.uid, info.gid = len(payload), 0, 0o644, 0, 0
                info.uname = info.gname = ""
                archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.mark.parametrize("count", [0, 1, 5, 37])
def test_webdataset_header_template_writes_exactly_the_bytes_tarfile_writes(count: int) -> None:
    rng = np.random.default_rng(count)
    images, labels = rng.integers(0, 256, (count, 8, 8), dtype=np.uint8), rng.integers(0, 10, count)
    assert _write("webdataset", images, labels) == _tarfile_reference(images, labels, "job-00003")


def test_webdataset_shard_reads_back_through_the_webdataset_library(tmp_path: Any) -> None:
    wds = pytest.importorskip("webdataset", reason="webdataset is in the dev extra")
    images, labels = _shard()
    path = tmp_path / "shard-00003.tar"
    path.write_bytes(_write("webdataset", images, labels))
    samples = list(wds.WebDataset(str(path), shardshuffle=False))
    assert [s["__key__"] for s in samples] == [f"job-00003-{i:07d}" for i in range(len(labels))]
    assert [s["png"] for s in samples] == [encode_png(image) for image in images]
    assert [int(s["cls"]) for s in samples] == [int(label) for label in labels]
