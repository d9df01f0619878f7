"""Output shard formats, written byte-for-byte deterministically.

`np.savez` stamps each zip member with the current time, so two runs of the same shard would differ; these
writers fix every timestamp and owner, so a shard retried after a crash is byte-identical to the first try.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from typing import IO, Protocol

import numpy as np

from synthjobs.rules.formats import FORMATS
from training.sample import encode_png

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXTENSIONS = {name: fmt.extension for name, fmt in FORMATS.items()}


def write_npz(stream: IO[bytes], images: np.ndarray, labels: np.ndarray, prefix: str = "") -> None:
    """An .npz readable by `np.load`: `images` (uint8) and `labels` (int64), uncompressed."""
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in (("images", images), ("labels", labels.astype(np.int64, copy=False))):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def write_webdataset(stream: IO[bytes], images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """A tar of `{key}.png` + `{key}.cls` pairs (webdataset's conventions), keys `{prefix}-{i:07d}`.

    The bytes are exactly what `tarfile` writes in USTAR format for these members (mode 0644, owner 0/0 with
    empty names, mtime 0), built from a header template: a `tarfile` member cost 47-88 us against 8-11 us of
    PNG encoding (bench/README.md).
    """
    written = 0
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        key = f"{prefix}-{i:07d}"
        written += _write_member(stream, f"{key}.png", encode_png(image))
        written += _write_member(stream, f"{key}.cls", str(int(label)).encode())
    written += 2 * tarfile.BLOCKSIZE  # the end-of-archive marker, then padding to a whole record (20 blocks)
    stream.write(b"\0" * (2 * tarfile.BLOCKSIZE + (-written % tarfile.RECORDSIZE)))


def _ustar_template() -> bytearray:
    """A USTAR header with every field fixed but name, size and checksum (filled per member)."""
    info = tarfile.TarInfo("x")
    info.size, info.mtime, info.mode, info.uid, info.gid = 0, 0, 0o644, 0, 0
    info.uname = info.gname = ""
    return bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))


_HEADER = _ustar_template()
_NAME, _SIZE, _CHKSUM = slice(0, 100), slice(124, 136), slice(148, 156)
_HEADER[_NAME] = bytes(100)
_HEADER[_SIZE] = b" " * 12
_HEADER[_CHKSUM] = b" " * 8
_HEADER_SUM = sum(_HEADER)  # of the constant fields; name and size digits are added per member


def _write_member(stream: IO[bytes], name: str, payload: bytes) -> int:
    """Write one regular-file member (header, payload, padding); return the bytes written."""
    encoded = name.encode()
    if len(encoded) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    header = bytearray(_HEADER)
    header[: len(encoded)] = encoded
    size = b"%011o\0" % len(payload)
    header[_SIZE] = size
    checksum = _HEADER_SUM - 12 * 32 + sum(size) + sum(encoded)
    header[_CHKSUM] = b"%06o\0 " % checksum
    stream.write(header)
    stream.write(payload)
    padding = -len(payload) % tarfile.BLOCKSIZE
    stream.write(b"\0" * padding)
    return tarfile.BLOCKSIZE + len(payload) + padding


# Writes one shard's images and labels to a stream; `prefix` names its members where a format has keys.
Writer = Callable[[IO[bytes], np.ndarray, np.ndarray, str], None]

# The worker's half of the output formats table (`synthjobs.rules.formats` names them).
WRITERS: dict[str, Writer] = {"npz": write_npz, "webdataset": write_webdataset}

if set(WRITERS) != set(FORMATS):  # pragma: no cover - a format half added
    raise RuntimeError(f"output formats without a writer: {sorted(set(FORMATS) - set(WRITERS))}")


class ShardEncoder(Protocol):
    """A shard written piece by piece: `add` the images in order, then `close` once.

    The bytes equal `write_shard`'s for the same images and labels however the images are split, so the
    worker can encode a chunk while it generates the next (`worker.pipelines.shard_io`).
    """

    def add(self, images: np.ndarray) -> None:
        """Append the next images (uint8, in shard order)."""
        ...

    def close(self) -> None:
        """Write what follows the last image; raises ValueError unless every image was added."""
        ...

    def abandon(self) -> None:
        """Let go of an unfinished shard (its file is being dropped) so nothing writes to it later."""
        ...


class _NpzEncoder:
    """`write_npz`, streamed: the images member's .npy header first (its shape is known), then its rows.

    The zip member is written with `force_zip64` into a seekable stream, so `zipfile` writes the same local
    header (patched with the CRC and sizes once the member is closed) whatever the chunks were.
    """

    def __init__(self, stream: IO[bytes], labels: np.ndarray, image_shape: tuple[int, ...]) -> None:
        self._labels = labels.astype(np.int64, copy=False)
        self._missing, self._shape = len(labels), tuple(image_shape)
        self._archive = zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member = self._archive.open(_npy_info("images"), "w", force_zip64=True)
        header = {"descr": "|u1", "fortran_order": False, "shape": (len(labels), *image_shape)}
        np.lib.format.write_array_header_1_0(self._member, header)  # what write_array picks for these

    def add(self, images: np.ndarray) -> None:
        if images.dtype != np.uint8 or images.shape[1:] != self._shape or len(images) > self._missing:
            raise ValueError(
                f"{images.shape} {images.dtype} images added, at most {self._missing} uint8 of {self._shape}"
            )
        self._missing -= len(images)
        self._member.write(np.ascontiguousarray(images).reshape(-1).data)

    def close(self) -> None:
        if self._missing:
            raise ValueError(f"shard closed with {self._missing} images never added")
        self._member.close()
        with self._archive.open(_npy_info("labels"), "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(self._labels), allow_pickle=False)
        self._archive.close()

    def abandon(self) -> None:
        # Closed into the file that is dropped: left open, the zip would write into it when collected.
        if not self._member.closed:
            self._member.close()
        self._archive.close()


def _npy_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
    info.external_attr = 0o644 << 16
    return info


class _WebdatasetEncoder:
    """`write_webdataset`, streamed: the members of each chunk's images, then the end-of-archive marker."""

    def __init__(self, stream: IO[bytes], labels: np.ndarray, prefix: str) -> None:
        self._stream, self._labels, self._prefix = stream, labels, prefix
        self._next = self._written = 0

    def add(self, images: np.ndarray) -> None:
        if len(images) > len(self._labels) - self._next:
            raise ValueError(f"{len(images)} images added, {len(self._labels) - self._next} expected")
        # The chunk's members in one write, not six small ones per image into the worker's spool (a
        # SpooledTemporaryFile: a Python-level `write` and a rollover check each): run_shard 0.65-0.68 ->
        # 0.70-0.72 of the bare loop on in-memory shards (bench/run_shard_inprocess.py).
        chunk = io.BytesIO()
        for image in images:
            key, label = f"{self._prefix}-{self._next:07d}", self._labels[self._next]
            self._written += _write_member(chunk, f"{key}.png", encode_png(image))
            self._written += _write_member(chunk, f"{key}.cls", str(int(label)).encode())
            self._next += 1
        self._stream.write(chunk.getbuffer())

    def close(self) -> None:
        if self._next != len(self._labels):
            raise ValueError(f"shard closed with {len(self._labels) - self._next} images never added")
        written = self._written + 2 * tarfile.BLOCKSIZE
        self._stream.write(b"\0" * (2 * tarfile.BLOCKSIZE + (-written % tarfile.RECORDSIZE)))

    def abandon(self) -> None:
        pass  # nothing buffered, nothing left to write


def open_encoder(
    stream: IO[bytes], fmt: str, labels: np.ndarray, image_shape: tuple[int, ...], prefix: str
) -> ShardEncoder:
    """A streaming writer of a shard in `fmt` with these labels; `image_shape` is one image's array shape
    ((H, W) or (H, W, C), as `generate` returns them). `stream` must be seekable (a zip patches headers)."""
    opener = ENCODERS.get(fmt)
    if opener is None:
        raise ValueError(f"unknown output format {fmt!r}")
    return opener(stream, labels, image_shape, prefix)


# The streaming half of each format (same bytes as its entry in WRITERS).
ENCODERS: dict[str, Callable[[IO[bytes], np.ndarray, tuple[int, ...], str], ShardEncoder]] = {
    "npz": lambda stream, labels, shape, prefix: _NpzEncoder(stream, labels, shape),
    "webdataset": lambda stream, labels, shape, prefix: _WebdatasetEncoder(stream, labels, prefix),
}
if set(ENCODERS) != set(FORMATS):  # pragma: no cover - a format half added
    raise RuntimeError(f"output formats without an encoder: {sorted(set(FORMATS) - set(ENCODERS))}")


def write_shard(stream: IO[bytes], fmt: str, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Write one shard in `fmt` (a name from `synthjobs.rules.formats`)."""
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown output format {fmt!r}")
    writer(stream, images, labels, prefix)
