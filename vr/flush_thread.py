"""A node's I/O thread: runs the replica's group commits (writes and fdatasyncs) off the event loop.

The loop hands over a prepared :class:`vr.replica.ReplicaFlush` (``Replica.begin_flush``)
and goes on receiving, executing and batching while the disk syncs; when the thread is
done it wakes the loop, and the loop delivers the completion to the replica
(``Replica.complete_flush``) as one more input. The replica is only ever touched on the
loop, so it stays a deterministic state machine; the thread touches only the storage and
the flush's own bytes (vr/journal_flush.py). One flush is in flight at a time: the next
batch accumulates meanwhile and goes in the next flush (docs/vr.md §2.2).

A failed sync is raised on the loop when the completion is delivered, and ends the node
like any fsync error: after one, nothing unsynced can be trusted (vr/storage.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable

from vr.journal_flush import FlushDone
from vr.replica import Replica, ReplicaFlush
from vr.storage import Storage


class FlushThread:
    """One worker thread, at most one flush in flight; see the module docstring."""

    def __init__(
        self, *, storage: Storage, replica: Replica, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]
    ) -> None:
        self._storage = storage
        self._replica = replica
        self._loop = loop
        self._wake = wake
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vr-flush")
        self._in_flight: tuple[ReplicaFlush, concurrent.futures.Future[FlushDone]] | None = None
        self.flushes = 0
        self.sync_wait_ns = 0  # loop time spent blocked on a flush (only at a clean stop)

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, flush: ReplicaFlush) -> None:
        assert self._in_flight is None, "one flush in flight at a time"
        future = self._executor.submit(flush.journal.run, self._storage)
        self._in_flight = (flush, future)
        self.flushes += 1
        future.add_done_callback(self._on_done)

    def _on_done(self, future: concurrent.futures.Future[FlushDone]) -> None:
        """On the worker thread: wake the loop (which then calls ``poll_completion``)."""
        del future
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone, nobody waits
            self._loop.call_soon_threadsafe(self._wake)

    def poll_completion(self) -> bool:
        """On the loop: deliver a finished flush to the replica; False if none has finished."""
        in_flight = self._in_flight
        if in_flight is None or not in_flight[1].done():
            return False
        self._in_flight = None
        flush, future = in_flight
        self._replica.complete_flush(flush, future.result())  # a failed sync raises here
        return True

    def drain(self) -> None:
        """Block until the flush in flight (if any) finishes, and deliver it (a clean stop)."""
        in_flight = self._in_flight
        if in_flight is not None:
            concurrent.futures.wait([in_flight[1]])
            self.poll_completion()

    def close(self) -> None:
        """Wait for the thread to finish what it runs (never abandon a write half-issued), then stop it."""
        self._executor.shutdown(wait=True)


__all__ = ["FlushThread"]
