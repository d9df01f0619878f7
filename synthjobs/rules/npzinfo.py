"""Read the shapes and dtypes of an `.npz` file's arrays from their headers, without numpy.

The API checks an upload's structure with this before storing it; it never loads the data (the API image
has no numpy and no torch). Full validation of the content happens in the worker before training.

A zip's members are compressed, so a small upload can declare gigabytes of arrays: the headers' shape x
itemsize is the decoded size, and each member's declared uncompressed size must match it exactly (zipfile
never inflates a member past its declared size, so a lying archive cannot grow beyond what was checked).
"""

from __future__ import annotations

import ast
import io
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

MAGIC = b"\x93NUMPY"
MAX_MEMBERS = 16  # images, labels, class_names and a few extras; each member costs a parse at upload
MAX_DIRECTORY_BYTES = 64 << 10  # the zip's central directory: ample for MAX_MEMBERS names
MAX_DIMENSIONS = 32
# Plain numeric, bool, bytes and unicode dtypes: '|u1', '<i8', '<f4', '|b1', '<U12', '|S5'.
# What zipfile raises for a member it cannot inflate: corrupt, encrypted, an unknown compression method.
_READ_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError, zlib.error)
_DESCR = re.compile(r"^[<>|=]?([biufcUSV])(\d{1,9})$")


class NpzError(ValueError):
    """Not an .npz the service can use; the message says why."""


class NpzTooLarge(NpzError):
    """A well-formed .npz whose arrays, decoded, exceed this deployment's budget (the API answers 413)."""


@dataclass(frozen=True)
class ArrayInfo:
    """One array's header: numpy dtype string (e.g. '|u1', '<i8') and shape."""

    dtype: str
    shape: tuple[int, ...]
    fortran_order: bool
    itemsize: int = 1
    data_offset: int = 0  # bytes of magic, version and header before the array data

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded array data (shape x itemsize), exact in Python integers."""
        return math.prod(self.shape) * self.itemsize

    @property
    def member_size(self) -> int:
        """Bytes the .npy member must decompress to: its header plus its data."""
        return self.data_offset + self.nbytes


def read_npz_headers(source: bytes | IO[bytes]) -> dict[str, ArrayInfo]:
    """The arrays of an .npz archive by name (without `.npy`), from their headers only.

    Raises:
        NpzError: not a zip, too many or duplicate members, a member that is not a plain-dtype .npy, a
            shape with negative or non-integer dimensions, or a member whose declared uncompressed size
            differs from what its header describes.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    _check_member_count(stream)
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise NpzError("not an .npz file (not a zip archive)") from exc
    arrays: dict[str, ArrayInfo] = {}
    with archive:
        if len(archive.infolist()) > MAX_MEMBERS:
            raise NpzError(f"the archive has more than {MAX_MEMBERS} members")
        for member in archive.infolist():
            name = member.filename
            if not name.endswith(".npy"):
                raise NpzError(f"unexpected member {name!r} in the archive")
            key = name[: -len(".npy")]
            if key in arrays:
                raise NpzError(f"member {name!r} appears twice in the archive")
            try:
                with archive.open(member) as opened:
                    info = _read_header(opened, name)
            except _READ_ERRORS as exc:
                raise NpzError(f"{name} cannot be read from the archive ({exc})") from exc
            if member.file_size != info.member_size:
                raise NpzError(
                    f"{name} declares {member.file_size} bytes uncompressed but its header describes "
                    f"{info.member_size} (shape {info.shape} of {info.dtype}): the archive is inconsistent"
                )
            arrays[key] = info
    return arrays


def decoded_size(arrays: dict[str, ArrayInfo]) -> int:
    """Bytes the archive's arrays take once decoded (the sum of their members' uncompressed sizes)."""
    return sum(info.member_size for info in arrays.values())


def check_decoded_size(arrays: dict[str, ArrayInfo], limit: int) -> int:
    """The decoded size; NpzTooLarge naming it and `limit` when it is larger."""
    size = decoded_size(arrays)
    if size > limit:
        raise NpzTooLarge(
            f"the arrays would take {size} bytes ({_human(size)}) decoded; "
            f"this deployment's limit is {limit} bytes ({_human(limit)})"
        )
    return size


def _check_member_count(stream: IO[bytes]) -> None:
    """Refuse a huge central directory before zipfile parses all of it into memory (one object a member)."""
    try:
        stream.seek(0)
        end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]  # stable since Python 2
    except (OSError, ValueError, struct.error) as exc:
        raise NpzError("not an .npz file (not a zip archive)") from exc
    finally:
        stream.seek(0)
    if not end:
        raise NpzError("not an .npz file (not a zip archive)")
    members, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if members > MAX_MEMBERS:
        raise NpzError(f"the archive has {members} members; an .npz dataset has at most {MAX_MEMBERS}")
    if directory > MAX_DIRECTORY_BYTES:
        raise NpzError(f"the archive's directory takes {directory} bytes; at most {MAX_DIRECTORY_BYTES}")


def _read_header(member: IO[bytes], name: str) -> ArrayInfo:
    prefix = member.read(8)
    if prefix[:6] != MAGIC or len(prefix) < 8:
        raise NpzError(f"{name} is not a .npy array")
    major = prefix[6]
    if major not in (1, 2, 3):
        raise NpzError(f"{name} has an unknown .npy format version {major}")
    size_format = "<H" if major == 1 else "<I"
    length_bytes = member.read(struct.calcsize(size_format))
    if len(length_bytes) != struct.calcsize(size_format):
        raise NpzError(f"{name} has a truncated header")
    (length,) = struct.unpack(size_format, length_bytes)
    if length > 65536:
        raise NpzError(f"{name} has an oversized header")
    try:
        header = ast.literal_eval(member.read(length).decode("latin1"))
        descr, shape, fortran_order = header["descr"], header["shape"], header["fortran_order"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        raise NpzError(f"{name} has an unreadable header") from exc
    if not isinstance(descr, str):
        raise NpzError(f"{name} has a structured dtype (only plain numeric and string arrays are accepted)")
    if "O" in descr:
        raise NpzError(f"{name} holds Python objects (pickles are refused)")
    match = _DESCR.match(descr)
    if match is None:
        raise NpzError(f"{name} has an unsupported dtype {descr!r}")
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMENSIONS:
        raise NpzError(f"{name} has an unreadable shape {shape!r}")
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise NpzError(f"{name} has an invalid shape {shape!r}: dimensions must be integers >= 0")
    kind, width = match.groups()
    itemsize = int(width) * (4 if kind == "U" else 1)
    data_offset = len(prefix) + len(length_bytes) + length
    return ArrayInfo(descr, shape, bool(fortran_order), itemsize=itemsize, data_offset=data_offset)


def _human(size: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def check_dataset_arrays(arrays: dict[str, ArrayInfo], max_decoded_bytes: int | None = None) -> ArrayInfo:
    """Check an uploaded dataset's structure (and its decoded size, given a limit); return the images' header.

    `images` must be uint8 N×H×W or N×H×W×C (C of 1 or 3), `labels` integer with N entries, and an optional
    `class_names` a 1-D string array.

    Raises:
        NpzTooLarge: past `max_decoded_bytes`, after the structure is found sound.
        NpzError: naming the first structural problem.
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
    if max_decoded_bytes is not None:
        check_decoded_size(arrays, max_decoded_bytes)
    return images
