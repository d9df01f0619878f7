"""An object written in place: a file to write it into, then one commit that makes it visible under its key.

A worker's shard used to be built in a spool of its own and then copied into storage: for a local folder
that is every byte written twice and read once more (a 200 MB webdataset shard: 0.15 s of writes in a
0.52 s shard, bench/README.md). `Storage.stage(key)` hands out the file the object will be instead: for a
local folder, a hidden `.tmp-` file beside the key, renamed into place by `commit`; for S3, a local spool
uploaded by `commit`. Until the commit nothing is visible under the key, and `abort` removes what was
written. A worker killed in between leaves a `.tmp-` file that no listing shows: `sweep_partials` and
`delete_prefix` remove those.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Protocol

SPOOL_BYTES = 64 << 20  # a staged S3 object stays in memory up to this size, then rolls over to disk
PARTIAL_PREFIX = ".tmp-"  # the name prefix of a local object being written; never listed as an object
# Files are written in slices of at most this. On these machines (ext4, Linux page cache) one write() of
# 1 MiB or more cost ~10x more per byte than writes of up to 512 KiB: 60 MB in 1 MiB writes 154-158 ms, in
# 256 KiB writes 14-15 ms (bench/README.md). An encoder hands over whole chunks (20 MB of webdataset
# members for 10,000 digits), and copies went 1 MiB at a time.
WRITE_SLICE = 256 << 10


def write_sliced(file: IO[bytes], data: bytes | bytearray | memoryview) -> int:
    """Write `data` to `file` in slices of at most WRITE_SLICE bytes; the bytes written."""
    view, written = memoryview(data).cast("B"), 0
    for start in range(0, len(view), WRITE_SLICE):
        written += file.write(view[start : start + WRITE_SLICE])
    return written


class StagedObject(Protocol):
    """An object being written: its bytes go into `file` (seekable); `commit` stores them under the key."""

    file: IO[bytes]

    def commit(self, sha256: str | None = None) -> str:
        """Make the file's content the object under the key (overwriting) and return its URI.

        `sha256` is the content's digest (hex) where the writer has it: a store that verifies uploads (S3)
        sends it as the checksum. Raises StorageError as `put_stream` does; after a failed commit the
        object can still be committed again or aborted.
        """
        ...

    def abort(self) -> None:
        """Drop what was written; nothing is stored under the key. Safe after a commit (does nothing)."""
        ...


class SpooledStage:
    """A staged object for a remote store: written into a local spool, sent by `put_stream` at commit."""

    def __init__(self, put: Callable[[IO[bytes], str | None], str]) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed below
        self._put = put

    def commit(self, sha256: str | None = None) -> str:
        self.file.seek(0)
        uri = self._put(self.file, sha256)
        self.file.close()
        return uri

    def abort(self) -> None:
        self.file.close()


class RetriedStage:
    """A staged object whose commit goes through a retry loop (`RetryingStorage._retry`)."""

    def __init__(self, inner: StagedObject, retry: Callable[[Callable[[], str], str], str], key: str) -> None:
        self.inner, self.file, self._retry, self._key = inner, inner.file, retry, key

    def commit(self, sha256: str | None = None) -> str:
        return self._retry(lambda: self.inner.commit(sha256), f"writing {self._key}")

    def abort(self) -> None:
        self.inner.abort()
