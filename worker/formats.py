"""Output shard formats, written byte-for-byte deterministically.

`np.savez` stamps each zip member with the current time, so two runs of the same shard would differ; these
writers fix every timestamp and owner, so a shard retried after a crash is byte-identical to the first try.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Callable
from typing import IO

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


def write_shard(stream: IO[bytes], fmt: str, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Write one shard in `fmt` (a name from `synthjobs.rules.formats`)."""
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown output format {fmt!r}")
    writer(stream, images, labels, prefix)
