"""A shard's encoding and upload, on one background thread while the shard's next images are generated.

The main thread generates a shard chunk by chunk (`training.sample.generate_chunks`) and hands each chunk to
`ShardIO.add`, which encodes it into the shard's staged object (`Storage.stage`: for a local folder the very
file that is renamed into place, for S3 a spool) and hashes what is appended as it is written. With
`overlap`, one I/O thread encodes a chunk while the next is generated; at most one chunk waits or is being
encoded (`add` first waits for the one before), so memory is two chunks plus the S3 spool. `upload` then
finishes the file and commits it on the same thread, after every chunk was encoded; its result arrives when
the storage has confirmed the write, so the shard is recorded DONE only after that.

Failures on the I/O thread are raised on the main thread by the next `add` or by `upload`'s result, as the
same exception (a StorageError keeps its message and whether it is transient), never swallowed; on any exit
the thread is joined and an uncommitted object aborted (`close`), so a failing or lost shard leaves no
thread and no file behind. With `overlap=False` each step runs inline on the caller's thread: the same
code, the same bytes, for comparing the two.

A ThreadPoolExecutor with one worker is the thread (ordered, exceptions carried by its futures); the bound
is ours (one pending future at a time).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, TypeVar, cast

import numpy as np

from synthjobs.storage.staged import StagedObject, write_sliced
from worker.formats import open_encoder

log = logging.getLogger(__name__)
T = TypeVar("T")


class HashingFile(io.RawIOBase):
    """A seekable file that hashes its bytes as they are appended, so the finished file needs no read-back.

    A format that only appends (webdataset) is hashed entirely on the way in. One that seeks back to patch
    what it wrote (zip headers: npz) makes the running digest stale; `sha256` then reads the file back once.
    """

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self._file, self._digest = file, hashlib.sha256()
        self._hashed = 0  # bytes [0, _hashed) are in the digest, in order
        self._stale = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        at = self._file.tell()
        written = write_sliced(self._file, view)  # big writes are slow here (`storage.staged.WRITE_SLICE`)
        if not self._stale:
            if at == self._hashed:
                self._digest.update(view)
                self._hashed += written
            else:
                self._stale = True  # an overwrite (or a gap): the digest no longer matches the file
        return written

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        self._file.flush()

    def sha256(self) -> tuple[int, str]:
        """(size, sha256) of the whole file as it is now."""
        size = self._file.seek(0, io.SEEK_END)
        if not self._stale and self._hashed == size:
            return size, self._digest.hexdigest()
        self._file.seek(0)
        digest = hashlib.sha256()
        while chunk := self._file.read(1 << 20):
            digest.update(chunk)
        return size, digest.hexdigest()


class ShardIO:
    """The shard file of one shard: chunks encoded in order, then hashed and uploaded, off the main thread."""

    def __init__(
        self,
        staged: StagedObject,
        fmt: str,
        labels: np.ndarray,
        image_shape: tuple[int, ...],
        prefix: str,
        *,
        overlap: bool,
    ) -> None:
        self._staged, self._file = staged, HashingFile(staged.file)
        try:
            self._encoder = open_encoder(cast(IO[bytes], self._file), fmt, labels, image_shape, prefix)
        except BaseException:
            staged.abort()
            raise
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-io") if overlap else None
        self._pending: Future[None] | None = None
        self._closed_file = self._committed = False

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - carried by the future, raised by its result()
            future.set_exception(exc)
        return future

    def _wait_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()  # the I/O thread's error, raised here

    def add(self, images: np.ndarray) -> None:
        """Encode `images` (the shard's next rows) on the I/O thread, once the chunk before is encoded."""
        self._wait_pending()
        self._pending = self._submit(self._encoder.add, images)

    def upload(self) -> Future[tuple[int, str]]:
        """Finish the file and commit it under its key; the future's result is (size, sha256)."""
        self._wait_pending()  # every chunk is in the file before its end is written and it is sent
        return self._submit(self._finish_and_commit)

    def _finish_and_commit(self) -> tuple[int, str]:
        self._encoder.close()
        self._closed_file = True
        size, sha256 = self._file.sha256()
        self._staged.commit(sha256)
        self._committed = True
        return size, sha256

    def close(self) -> None:
        """Wait for the I/O thread's current step (queued ones are cancelled), then drop the file unless
        committed."""
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            if not self._closed_file:
                self._encoder.abandon()
        except Exception:  # noqa: BLE001 - the file is dropped; the shard's own error is what matters
            log.debug("abandoning an unfinished shard file failed", exc_info=True)
        finally:
            if not self._committed:
                self._staged.abort()
