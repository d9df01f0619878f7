"""A shard's encoding and upload, on one background thread while the shard's next images are generated.

The main thread generates a shard chunk by chunk (`training.sample.generate_chunks`) and hands each chunk to
`ShardIO.add`; one I/O thread encodes it into the shard file (spooled to disk past 64 MB) while the next is
generated. At most one chunk waits or is being encoded (`add` first waits for the one before), so memory
is the shard file plus two chunks. `upload` then hashes the file and stores it on the same thread, after
every chunk was encoded; its result arrives when the storage has confirmed the write, so the shard is
recorded DONE only after that.

Failures on the I/O thread are raised on the main thread by the next `add` or by `upload`'s result, as the
same exception (a StorageError keeps its message and whether it is transient), never swallowed; on any exit
the thread is joined (`close`), so a failing or lost shard leaves no thread behind. With `overlap=False`
each step runs inline on the caller's thread: the same code, the same bytes, for comparing the two.

A ThreadPoolExecutor with one worker is the thread (ordered, exceptions carried by its futures); the bound
is ours (one pending future at a time).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from synthjobs.storage.base import Storage
from worker.formats import open_encoder

log = logging.getLogger(__name__)
SPOOL_BYTES = 64 << 20
T = TypeVar("T")


class ShardIO:
    """The shard file of one shard: chunks encoded in order, then hashed and uploaded, off the main thread."""

    def __init__(
        self, fmt: str, labels: np.ndarray, image_shape: tuple[int, ...], prefix: str, *, overlap: bool
    ) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by close()
        self._encoder = open_encoder(self._spool, fmt, labels, image_shape, prefix)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-io") if overlap else None
        self._pending: Future[None] | None = None
        self._closed_file = False

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

    def upload(self, storage: Storage, key: str) -> Future[tuple[int, str]]:
        """Finish the file, hash it and store it under `key`; the future's result is (size, sha256)."""
        self._wait_pending()  # every chunk is in the file before its end is written and it is sent
        return self._submit(self._finish_and_store, storage, key)

    def _finish_and_store(self, storage: Storage, key: str) -> tuple[int, str]:
        self._encoder.close()
        self._closed_file = True
        self._spool.seek(0)
        digest, size = hashlib.sha256(), 0
        while chunk := self._spool.read(1 << 20):
            size += len(chunk)
            digest.update(chunk)
        self._spool.seek(0)
        storage.put_stream(key, self._spool, sha256=digest.hexdigest())
        return size, digest.hexdigest()

    def close(self) -> None:
        """Wait for the I/O thread's current step (queued ones are cancelled), then drop the file."""
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            if not self._closed_file:
                self._encoder.abandon()
        except Exception:  # noqa: BLE001 - the file is dropped; the shard's own error is what matters
            log.debug("abandoning an unfinished shard file failed", exc_info=True)
        finally:
            self._spool.close()

    def __enter__(self) -> ShardIO:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
