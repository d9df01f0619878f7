"""Read the shapes and dtypes of an `.npz` file's arrays from their headers, without numpy.

The API checks an upload's structure with this before storing it; it never loads the data (the API image
has no numpy and no torch). Full validation of the content happens in the worker before training.
"""

from __future__ import annotations

import ast
import io
import struct
import zipfile
from dataclasses import dataclass
from typing import IO

MAGIC = b"\x93NUMPY"


class NpzError(ValueError):
    """Not an .npz the service can use; the message says why."""


@dataclass(frozen=True)
class ArrayInfo:
    """One array's header: numpy dtype string (e.g. '|u1', '<i8') and shape."""

    dtype: str
    shape: tuple[int, ...]
    fortran_order: bool


def read_npz_headers(source: bytes | IO[bytes]) -> dict[str, ArrayInfo]:
    """The arrays of an .npz archive by name (without `.npy`), from their headers only."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except zipfile.BadZipFile as exc:
        raise NpzError("not an .npz file (not a zip archive)") from exc
    arrays = {}
    with archive:
        for name in archive.namelist():
            if not name.endswith(".npy"):
                raise NpzError(f"unexpected member {name!r} in the archive")
            with archive.open(name) as member:
                arrays[name[: -len(".npy")]] = _read_header(member, name)
    return arrays


def _read_header(member: IO[bytes], name: str) -> ArrayInfo:
    prefix = member.read(8)
    if prefix[:6] != MAGIC:
        raise NpzError(f"{name} is not a .npy array")
    major = prefix[6]
    size_format = "<H" if major == 1 else "<I"
    (length,) = struct.unpack(size_format, member.read(struct.calcsize(size_format)))
    if length > 65536:
        raise NpzError(f"{name} has an oversized header")
    try:
        header = ast.literal_eval(member.read(length).decode("latin1"))
        info = ArrayInfo(
            str(header["descr"]), tuple(int(n) for n in header["shape"]), bool(header["fortran_order"])
        )
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise NpzError(f"{name} has an unreadable header") from exc
    if info.dtype.startswith("|O") or "O" in info.dtype:
        raise NpzError(f"{name} holds Python objects (pickles are refused)")
    return info


def check_dataset_arrays(arrays: dict[str, ArrayInfo]) -> ArrayInfo:
    """Check an uploaded dataset's structure; return the images' header.

    `images` must be uint8 N×H×W or N×H×W×C (C of 1 or 3), `labels` integer with N entries, and an optional
    `class_names` a 1-D string array.
    """
    missing = {"images", "labels"} - arrays.keys()
    if missing:
        raise NpzError(f"missing array(s): {', '.join(sorted(missing))} (need 'images' and 'labels')")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != "|u1":
        raise NpzError(f"images must be uint8, got dtype {images.dtype}")
    if len(images.shape) not in (3, 4) or (len(images.shape) == 4 and images.shape[3] not in (1, 3)):
        raise NpzError(f"images must be N×H×W or N×H×W×C with C of 1 or 3, got shape {images.shape}")
    if labels.dtype[1:2] not in ("i", "u") or len(labels.shape) != 1:
        raise NpzError(f"labels must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise NpzError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise NpzError("the dataset holds no images")
    names = arrays.get("class_names")
    if names is not None and (names.dtype[1:2] != "U" or len(names.shape) != 1):
        raise NpzError(f"class_names must be a 1-D string array, got dtype {names.dtype}")
    return images
