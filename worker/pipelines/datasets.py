"""Turn a job's dataset spec into an in-memory ImageDataset, reading storage or a local root.

Specs are normalised by the API (`api/schemas.py`); they name data, never code. Local paths must lie under
one of the configured data roots (symlinks resolved), so a request cannot make a worker read its own
files. Problems with the data itself raise training's DatasetError, which fails the job with its message.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import numpy as np

from synthjobs.errors import JobFailure
from synthjobs.npzinfo import NpzError, check_decoded_size, read_npz_headers
from synthjobs.settings import Settings
from synthjobs.storage import S3Storage, Storage, local_path_of
from training.data import (
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    decode_image_folder,
    load_dataset,
    load_torchvision_dataset,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_training_data(spec: dict[str, Any], settings: Settings, storage: Storage) -> ImageDataset:
    """The dataset a training job asked for."""
    kind = spec.get("kind")
    if kind == "builtin":
        return load_dataset(spec["name"])
    if kind == "torchvision":
        root = local_path_under_roots(spec["root"], settings)
        return load_torchvision_dataset(spec["name"], str(root), download=bool(spec.get("download")))
    if kind == "image_folder":
        return decode_image_folder(
            iter_image_folder(spec["url"], settings),
            max_image_pixels=settings.max_image_pixels,
            max_dataset_pixels=settings.max_dataset_pixels,
        )
    if kind == "uploaded":
        payload = storage.get_bytes(storage.key_of(spec["uri"]))
        return _load_npz(payload, f"dataset {spec['id']}", settings.max_dataset_bytes)
    raise JobFailure(f"unknown dataset kind {kind!r}")


def describe(spec: dict[str, Any]) -> str:
    """A short label for the dataset, recorded with the model."""
    kind = spec.get("kind")
    if kind in ("builtin", "torchvision"):
        return str(spec["name"])
    if kind == "image_folder":
        return f"image_folder:{spec['url']}"
    return f"uploaded:{spec.get('id')}"


def local_path_under_roots(path: str, settings: Settings) -> Path:
    """`path` resolved, if it lies under a configured data root; JobFailure otherwise."""
    resolved = Path(path).resolve()
    roots = settings.resolved_data_roots()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise JobFailure(f"{path} is not under a data root this worker may read ({allowed})")
    return resolved


def iter_image_folder(url: str, settings: Settings) -> Iterator[tuple[str, str, bytes]]:
    """(class name, file name, bytes) of every image under `url`/<class_name>/<image>."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        yield from _iter_local_folder(local_path_under_roots(str(local_path_of(url)), settings))
    elif parsed.scheme == "s3":
        yield from _iter_s3_folder(S3Storage(parsed.netloc, parsed.path, settings), url)
    else:
        raise JobFailure(f"unsupported image folder URL {url!r}")


def _iter_local_folder(root: Path) -> Iterator[tuple[str, str, bytes]]:
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    for path in sorted(root.glob("*/*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield path.parent.name, f"{path.parent.name}/{path.name}", path.read_bytes()


def _iter_s3_folder(store: S3Storage, url: str) -> Iterator[tuple[str, str, bytes]]:
    keys = [k for k in store.list_keys("") if k.count("/") == 1 and k.lower().endswith(IMAGE_SUFFIXES)]
    if not keys:
        raise DatasetError(f"image folder {url} holds no <class>/<image> files ({', '.join(IMAGE_SUFFIXES)})")
    for key in keys:
        class_name, _ = key.split("/")
        yield class_name, key, store.get_raw(key)


def _load_npz(payload: bytes, label: str, max_bytes: int) -> ImageDataset:
    """An uploaded .npz as an ImageDataset, never decoding more than `max_bytes`.

    The headers are checked first, as at upload (the limit may have been lowered since, and a file can come
    from before the check existed): each member's declared size must match its header and the sum stay
    within `max_bytes`. Each array is then read through a reader capped at its member's declared size, so
    an archive whose data inflates past what it declares fails instead of growing in memory.
    """
    try:
        arrays = read_npz_headers(payload)
        check_decoded_size(arrays, max_bytes)
    except NpzError as exc:
        raise DatasetError(f"{label}: {exc}") from exc
    if "images" not in arrays or "labels" not in arrays:
        raise DatasetError(f"{label}: an .npz dataset needs arrays 'images' and 'labels'")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:

            def read(name: str) -> np.ndarray:
                member = archive.getinfo(f"{name}.npy")
                with archive.open(member) as stream:
                    capped = _CappedReader(stream, arrays[name].member_size, f"{label}: {name}.npy")
                    return np.lib.format.read_array(capped, allow_pickle=False)  # type: ignore[arg-type]

            images, labels = read("images"), read("labels")
            names = [str(n) for n in read("class_names")] if "class_names" in arrays else None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{label}: not a readable .npz file ({exc})") from exc
    return dataset_from_arrays(images, labels, names)


class _CappedReader:
    """A read-only stream that refuses to yield more than `cap` bytes of the stream it wraps."""

    def __init__(self, stream: IO[bytes], cap: int, label: str) -> None:
        self._stream, self._left, self._label, self._cap = stream, cap, label, cap

    def read(self, size: int = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        data = self._stream.read(want)
        self._left -= len(data)
        if self._left < 0:
            raise DatasetError(f"{self._label} inflates past its declared {self._cap} bytes")
        return data
