"""Storage in a local folder: atomic writes (temp file + rename), used by the demo and the embedded setup."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from synthjobs.errors import InvalidKey, ObjectNotFound, StorageError
from synthjobs.storage.base import key_under, uri_under, validate_key, validate_prefix
from synthjobs.storage.staged import PARTIAL_PREFIX, WRITE_SLICE, write_sliced


class LocalStorage:
    """A folder on disk; writes are atomic (temp file + rename), so readers never see half an object."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"key {key!r} escapes the storage root")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        return self._put(key, lambda handle: write_sliced(handle, data))

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        # a local copy is not checked against `sha256`: no transfer to verify
        return self._put(key, lambda handle: shutil.copyfileobj(stream, handle, WRITE_SLICE))

    def _put(self, key: str, write: Callable[[IO[bytes]], object]) -> str:
        """Write an object through its staged file, renamed into place only once it is whole."""
        staged = self._stage(key)
        try:
            write(staged.file)
            return staged.commit()
        except BaseException:
            staged.abort()
            raise

    def stage(self, key: str, content_type: str = "application/octet-stream") -> LocalStage:
        """The object's file, written in place beside its key and renamed into place by `commit`."""
        return self._stage(key)

    def _stage(self, key: str) -> LocalStage:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return LocalStage(path, self.uri(key))

    def sweep_partials(self, prefix: str, older_than: float) -> int:
        """Remove the `.tmp-` files under `prefix` untouched for `older_than` seconds: what writers killed
        mid-write left (a live writer touches its file every chunk). Returns how many were removed."""
        cutoff, removed = time.time() - older_than, 0
        for partial in self._partials(validate_prefix(prefix)):
            try:
                if partial.stat().st_mtime <= cutoff:
                    partial.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # committed or aborted meanwhile
        return removed

    def _partials(self, prefix: str) -> list[Path]:
        base = self.root / prefix.strip("/")
        if not base.resolve().is_relative_to(self.root) or not base.is_dir():
            return []
        return [p for p in base.rglob(f"{PARTIAL_PREFIX}*") if p.is_file()]

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"no object {self.uri(key)}") from exc

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def presigned_url(self, key: str, seconds: int) -> str | None:
        return None  # a folder has no URLs of its own: the API streams it

    def path_of(self, key: str) -> Path:
        """The file holding the object under `key` (for streaming it)."""
        return self._path(key)

    def size_and_sha256(self, key: str) -> tuple[int, str]:
        digest, size = hashlib.sha256(), 0
        try:
            with self._path(key).open("rb") as handle:
                while chunk := handle.read(1 << 20):
                    size += len(chunk)
                    digest.update(chunk)
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {self.uri(key)}") from exc
        return size, digest.hexdigest()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self.root / prefix.strip("/") if prefix else self.root
        if not base.resolve().is_relative_to(self.root):
            raise InvalidKey(f"prefix {prefix!r} escapes the storage root")
        if not base.exists():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in keys if not Path(k).name.startswith(PARTIAL_PREFIX))

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        out = []
        for key in self.list_keys(prefix):
            try:
                out.append((key, (self.root / key).stat().st_size))
            except FileNotFoundError:
                continue  # removed while we listed
        return out

    def delete_keys(self, keys: list[str]) -> int:
        for key in keys:
            self.delete(key)
        return len(keys)

    def delete_prefix(self, prefix: str) -> list[tuple[str, int]]:
        folder = validate_prefix(prefix)
        removed = self.list_objects(folder)
        self.delete_keys([key for key, _ in removed])
        for partial in self._partials(folder):  # left by writers killed mid-write: nobody commits them now
            partial.unlink(missing_ok=True)
        base = self.root / folder.rstrip("/")
        if base.is_dir():  # empty folders left behind, deepest first
            for directory in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                _remove_empty(directory)
            _remove_empty(base)
        return removed

    def uri(self, key: str) -> str:
        return uri_under(self.url, key)

    def key_of(self, uri: str) -> str:
        return key_under(self.url, uri)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".healthcheck"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"local storage {self.root} is not writable: {exc}") from exc


class LocalStage:
    """An object being written into a hidden file beside its key (`synthjobs.storage.staged`)."""

    def __init__(self, path: Path, uri: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX)
        self.file: IO[bytes] = os.fdopen(fd, "w+b")
        self._tmp, self._path, self._uri = Path(tmp), path, uri

    def commit(self, sha256: str | None = None) -> str:
        """Rename the file into place (a local copy has no transfer to verify against `sha256`)."""
        if not self.file.closed:
            self.file.close()
        os.replace(self._tmp, self._path)
        return self._uri

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self._tmp.unlink(missing_ok=True)


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty (a writer added something meanwhile) or already gone
