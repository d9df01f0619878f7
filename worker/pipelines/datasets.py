"""Turn a job's dataset spec into an in-memory ImageDataset, reading storage or a local root.

Specs are normalised by the API (`api/schemas.py`); they name data, never code. Every location is checked
again here against the job's tenant's data sources (`synthjobs.rules.data_sources`), so a request cannot
make a worker read its own files, another tenant's data or the service's outputs: local paths with symlinks
resolved (each class folder and each file too), S3 through a client built from the source's own endpoint
and credentials, never the service's. Problems with the data itself raise training's DatasetError, which
fails the job with its message.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from synthjobs.errors import JobFailure, StorageError
from synthjobs.rules import dataset_kinds
from synthjobs.rules.data_sources import (
    DataSource,
    DataSourceRefused,
    Location,
    check_inside,
    local_location,
    match_source,
)
from synthjobs.rules.dataset_kinds import get_dataset_kind
from synthjobs.rules.npzinfo import NpzError, check_decoded_size, read_npz_headers
from synthjobs.settings import Settings
from synthjobs.storage.base import Storage
from synthjobs.storage.s3 import S3Storage, s3_error
from training.data import (
    DatasetError,
    ImageDataset,
    dataset_from_arrays,
    decode_image_folder,
    load_dataset,
    load_torchvision_dataset,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# The folder under a torchvision root that each dataset's loader reads.
TORCHVISION_FOLDERS = {"MNIST": "MNIST", "FashionMNIST": "FashionMNIST", "CIFAR10": "cifar-10-batches-py"}


# Reads the data a spec names for a tenant: `(spec, settings, storage, tenant) -> ImageDataset`.
Loader = Callable[[dict[str, Any], Settings, Storage, str], ImageDataset]


def load_training_data(
    spec: dict[str, Any], settings: Settings, storage: Storage, *, tenant: str
) -> ImageDataset:
    """The dataset a training job of `tenant` asked for, read only from that tenant's data sources."""
    kind = str(spec.get("kind"))
    loader = LOADERS.get(kind)
    if loader is None:
        try:
            reference = get_dataset_kind(kind).loader
        except KeyError:
            raise JobFailure(f"unknown dataset kind {kind!r}") from None
        if not reference:
            raise JobFailure(f"dataset kind {kind!r} has no loader on this worker")
        loader = resolve_loader(reference)
    return loader(spec, settings, storage, tenant)


def resolve_loader(reference: str) -> Loader:
    """The loader a plugin's DatasetKind names as `module:function` (imported here, in the worker only)."""
    module, _, name = reference.partition(":")
    function: Loader = getattr(importlib.import_module(module), name)
    return function


def _load_builtin(spec: dict[str, Any], settings: Settings, storage: Storage, tenant: str) -> ImageDataset:
    return load_dataset(spec["name"])


def _load_torchvision(
    spec: dict[str, Any], settings: Settings, storage: Storage, tenant: str
) -> ImageDataset:
    download = bool(spec.get("download"))
    if download and not settings.allow_dataset_downloads:
        raise JobFailure("this deployment does not download datasets (download: true is refused)")
    root = local_path_under_roots(spec["root"], settings, tenant=tenant)
    _check_torchvision_tree(root, spec["name"], settings, tenant)
    return load_torchvision_dataset(spec["name"], str(root), download=download)


def _load_image_folder(
    spec: dict[str, Any], settings: Settings, storage: Storage, tenant: str
) -> ImageDataset:
    return decode_image_folder(
        iter_image_folder(spec["url"], settings, tenant=tenant),
        max_image_pixels=settings.max_image_pixels,
        max_dataset_pixels=settings.max_dataset_pixels,
    )


def _load_uploaded(spec: dict[str, Any], settings: Settings, storage: Storage, tenant: str) -> ImageDataset:
    payload = storage.get_bytes(storage.key_of(spec["uri"]))
    return _load_npz(payload, f"dataset {spec['id']}", settings.max_dataset_bytes)


# The worker's half of the dataset kinds table (`synthjobs.rules.dataset_kinds` holds the rest).
LOADERS: dict[str, Loader] = {
    dataset_kinds.BUILTIN.name: _load_builtin,
    dataset_kinds.TORCHVISION.name: _load_torchvision,
    dataset_kinds.IMAGE_FOLDER.name: _load_image_folder,
    dataset_kinds.UPLOADED.name: _load_uploaded,
}


def describe(spec: dict[str, Any]) -> str:
    """A short label for the dataset, recorded with the model (its kind's, from the table)."""
    return dataset_kinds.describe(spec)


def source_of(url: str, settings: Settings, tenant: str) -> tuple[DataSource, Location]:
    """The tenant's data source holding `url` and `url` normalised (symlinks resolved); JobFailure if none.

    The API checked this at submit; checking again here refuses a job whose params were changed since, or
    a source the deployment has removed since.
    """
    try:
        return match_source(
            url,
            settings.resolved_data_sources(tenant),
            settings.resolved_storage_url(),
            resolve_local=os.path.realpath,
        )
    except DataSourceRefused as exc:
        raise JobFailure(str(exc)) from exc


def local_path_under_roots(path: str, settings: Settings, *, tenant: str) -> Path:
    """`path` resolved, if it lies in one of the tenant's file:// data sources; JobFailure otherwise."""
    _, location = source_of(path, settings, tenant)
    if location.scheme != "file":
        raise JobFailure(f"{path} is not a local path")
    return Path(location.path)


def iter_image_folder(url: str, settings: Settings, *, tenant: str) -> Iterator[tuple[str, str, bytes]]:
    """(class name, file name, bytes) of every image under `url`/<class_name>/<image>."""
    source, location = source_of(url, settings, tenant)
    if location.scheme == "file":
        guard = _Containment(source.location, settings)
        yield from _iter_local_folder(Path(location.path), guard)
    elif location.scheme == "s3":
        yield from _iter_s3_folder(_source_storage(source, location, settings), url)
    else:
        raise JobFailure(f"unsupported image folder URL {url!r}")


class _Containment:
    """Refuses a path that resolves outside its data source's root or into the service's storage."""

    def __init__(self, root: Location, settings: Settings) -> None:
        self.root = local_location(os.path.realpath(root.path))
        self.service_storage = settings.resolved_storage_url()

    def check(self, path: Path) -> Path:
        """The real path of `path` (links followed) if it stays inside; DatasetError otherwise."""
        try:
            real = check_inside(str(path), self.root, self.service_storage, resolve_local=os.path.realpath)
        except DataSourceRefused as exc:
            raise DatasetError(str(exc)) from exc
        return Path(real.path)


def _iter_local_folder(root: Path, guard: _Containment) -> Iterator[tuple[str, str, bytes]]:
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    for class_dir in _visible(root):
        if not class_dir.is_dir():
            continue
        guard.check(class_dir)  # a class folder that links out of the source is refused...
        for path in _visible(class_dir):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                real = guard.check(path)  # ...and so is each image that does
                yield class_dir.name, f"{class_dir.name}/{path.name}", real.read_bytes()


def _visible(folder: Path) -> list[Path]:
    """Entries of `folder` as glob's `*` sees them: sorted, dot-files left out."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _check_torchvision_tree(root: Path, name: str, settings: Settings, tenant: str) -> None:
    """Refuse a torchvision root whose files link outside the tenant's source (torchvision reads them)."""
    source, _ = source_of(str(root), settings, tenant)
    guard = _Containment(source.location, settings)
    folder = root / TORCHVISION_FOLDERS.get(name, name)
    if not folder.exists():
        return
    guard.check(folder)
    seen: set[str] = set()
    # Links are followed (torchvision follows them), each one checked first; a cycle is walked once.
    for parent, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(parent)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        for entry in (*dirs, *files):
            guard.check(Path(parent) / entry)


def _source_storage(source: DataSource, location: Location, settings: Settings) -> S3Storage:
    """The S3 prefix `location` read with the source's own endpoint and credentials, never the service's."""
    import boto3
    from botocore.config import Config

    credentials: dict[str, str] = {}
    if source.has_credentials:
        names = [
            ("aws_access_key_id", source.access_key_id_env),
            ("aws_secret_access_key", source.secret_access_key_env),
            ("aws_session_token", source.session_token_env),
        ]
        for argument, env in names:
            if env and not os.environ.get(env):
                log.warning("data source %s: environment variable %s is not set", source.url, env)
                raise JobFailure(
                    f"the credentials of data source {source.url} are not available on this worker"
                )
            if env:
                credentials[argument] = os.environ[env]
    elif not settings.data_sources_instance_credentials:
        raise JobFailure(f"data source {source.url} has no credentials configured on this deployment")
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60)
    client = boto3.client(
        "s3",
        endpoint_url=source.endpoint_url or settings.s3_endpoint_url,
        region_name=source.region or settings.s3_region,
        config=config,
        **credentials,
    )
    return S3Storage(location.bucket, location.path, settings, client=client)


def _iter_s3_folder(store: S3Storage, url: str) -> Iterator[tuple[str, str, bytes]]:
    try:
        listed = store.list_keys("")
    except (BotoCoreError, ClientError) as exc:
        raise _dataset_read_error(s3_error(f"could not list {url}", exc)) from exc
    keys = [k for k in listed if k.count("/") == 1 and k.lower().endswith(IMAGE_SUFFIXES)]
    if not keys:
        raise DatasetError(f"image folder {url} holds no <class>/<image> files ({', '.join(IMAGE_SUFFIXES)})")
    for key in keys:
        class_name, _ = key.split("/")
        try:
            payload = store.get_raw(key)
        except StorageError as exc:
            raise _dataset_read_error(exc) from exc
        yield class_name, key, payload


def _dataset_read_error(exc: StorageError) -> Exception:
    """A transient error stays one (retried); a permanent one (access denied) fails the job readably."""
    return exc if exc.transient else JobFailure(str(exc))


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
