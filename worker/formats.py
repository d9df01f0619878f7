"""Output shard formats, written byte-for-byte deterministically.

`np.savez` stamps each zip member with the current time, so two runs of the same shard would differ; these
writers fix every timestamp and owner, so a shard retried after a crash is byte-identical to the first try.
"""

from __future__ import annotations

import io
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
    """A tar of `{key}.png` + `{key}.cls` pairs (webdataset's conventions), keys `{prefix}-{i:07d}`."""
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            key = f"{prefix}-{i:07d}"
            _add(archive, f"{key}.png", encode_png(image))
            _add(archive, f"{key}.cls", str(int(label)).encode())


def _add(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(payload), 0, 0o644, 0, 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(payload))


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
