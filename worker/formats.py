"""Output shard formats, written byte-for-byte deterministically.

`np.savez` stamps each zip member with the current time, so two runs of the same shard would differ; these
writers fix every timestamp and owner, so a shard retried after a crash is byte-identical to the first try.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import IO

import numpy as np

from training.sample import encode_png

FIXED_TIME = (1980, 1, 1, 0, 0, 0)
EXTENSIONS = {"npz": "npz", "webdataset": "tar"}


def write_npz(stream: IO[bytes], images: np.ndarray, labels: np.ndarray) -> None:
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


def write_shard(stream: IO[bytes], fmt: str, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    """Write one shard in `fmt` (npz or webdataset)."""
    if fmt == "npz":
        write_npz(stream, images, labels)
    elif fmt == "webdataset":
        write_webdataset(stream, images, labels, prefix)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
