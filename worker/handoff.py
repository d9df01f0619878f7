"""A shard's tail, on one background thread of the worker process, while its next task generates.

A shard task generates and encodes its shard, starts its upload (`ShardIO.upload`), and then would wait:
for the store to confirm the write (an S3 PUT: moto measured 40 ms of a 110 ms 100k-sample digits shard),
for the npz's sha256, and for the SQL transaction that records it DONE and releases the next units. With
`sample_overlap` the task hands that tail to this thread and returns, so the worker takes its next message
(the window has already released it) and generates the next shard meanwhile.

What stays exactly as it was: the shard is DONE only once its upload is confirmed, by the same transaction;
its lease is renewed until then, so a deletion waits for it (`ledger.deletion.may_still_write`) and a
takeover stops it before it records anything; a failure goes through the same retry path. What a worker
killed mid-tail loses is the tail alone: the shard is still RUNNING in SQL, the reconciler requeues it once
its lease expires, and its retry overwrites the same key with the same bytes.

At most one tail is in flight per process (`submit` first waits for the one before), so memory is one
finished shard's upload plus the shard being generated. A shutting-down worker waits for it (`drain`).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class Handoff:
    """One background thread running shard tails one after the other, at most one waiting or running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def submit(self, tail: Callable[[], None]) -> None:
        """Run `tail` on the thread once the tail before it has ended (it must handle its own errors).

        It runs in a copy of the caller's context, so its log lines carry the shard's job id and attempt.
        """
        self.drain()
        context = contextvars.copy_context()
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-tail")
            self._pending = self._pool.submit(context.run, _logged, tail)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait for the tail in flight, if any; False if it is still running after `timeout` seconds."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return True
        try:
            pending.result(timeout=timeout)
        except TimeoutError:
            return False
        with self._lock:
            if self._pending is pending:
                self._pending = None
        return True


def _logged(tail: Callable[[], None]) -> None:
    try:
        tail()
    except Exception:  # noqa: BLE001 - a tail records its own failures; this is a last resort
        log.exception("a shard's tail failed outside its own error handling")


HANDOFF = Handoff()
