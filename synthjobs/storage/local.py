"""Storage in a local folder: atomic writes (temp file + rename), used by the demo and the embedded setup."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from synthjobs.errors import InvalidKey, ObjectNotFound, StorageError
from synthjobs.storage.base import key_under, uri_under, validate_key, validate_prefix


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
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def put_stream(
        self,
        key: str,
        stream: IO[bytes],
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> str:
        path = self._path(key)  # a local copy is not checked against `sha256`: no transfer to verify
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(stream, handle, 1 << 20)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

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
        return sorted(k for k in keys if not Path(k).name.startswith(".tmp-"))

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


def _remove_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty (a writer added something meanwhile) or already gone
