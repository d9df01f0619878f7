"""The table of output formats a sampling job can write: name, file extension, description, size bound.

The API's `SampleRequest.format` is `FormatName` (its OpenAPI enum and default come from here), the byte
limits and the storage quota use each format's `sample_bytes`, and the worker's writers
(`worker/formats.py`) are keyed by the same names and refuse to start if one lacks a writer. A new format
is one entry here (and in `FormatName`, which the type checker needs spelled out; the import-time check
below catches a mismatch) plus its writer in `worker/formats.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

FormatName = Literal["npz", "webdataset"]
DEFAULT_FORMAT: FormatName = "npz"
TAR_BLOCK = 512


@dataclass(frozen=True)
class OutputFormat:
    """One shard file format."""

    name: str
    extension: str
    description: str
    # Bytes one sample of (C, H, W) takes in a shard file of this format, at most (the byte limits and the
    # storage quota reserve this much, so an admitted job cannot overrun them).
    sample_bytes: Callable[[int, int, int], int]


def _npz_bytes(c: int, h: int, w: int) -> int:
    return c * h * w + 8  # the uint8 image plus its int64 label


def _padded(size: int) -> int:
    return -(-size // TAR_BLOCK) * TAR_BLOCK


def _webdataset_bytes(c: int, h: int, w: int) -> int:
    """A tar member (512-byte header, data padded to 512) for the PNG, at worst stored uncompressed
    (zlib's bound), and one for the label's `.cls`."""
    rows = h * (w * c + 1)  # one filter byte per row
    deflated = rows + (rows >> 12) + (rows >> 14) + (rows >> 25) + 13  # zlib's compressBound
    png = 8 + 25 + 12 + deflated + 12  # signature, IHDR, IDAT framing, IEND
    return TAR_BLOCK + _padded(png) + TAR_BLOCK + TAR_BLOCK


FORMATS: dict[str, OutputFormat] = {
    fmt.name: fmt
    for fmt in (
        OutputFormat("npz", "npz", "uint8 `images`, int64 `labels`", _npz_bytes),
        OutputFormat("webdataset", "tar", "tar of `{key}.png` + `{key}.cls`", _webdataset_bytes),
    )
}

if set(get_args(FormatName)) != set(FORMATS):  # pragma: no cover - a format half added
    raise RuntimeError(f"FormatName {get_args(FormatName)} and FORMATS {sorted(FORMATS)} disagree")


def get_format(name: str) -> OutputFormat:
    """The format `name`; ValueError for one this service does not write."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r}") from None


def describe_formats() -> str:
    """`name: description` of every format, for the API's field description."""
    return " ".join(f"{fmt.name}: {fmt.description}." for fmt in FORMATS.values())
