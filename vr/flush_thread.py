"""A node's group commits: run on the loop while the disk syncs fast, on an I/O thread when it does not.

The replica prepares a flush (``Replica.begin_flush``: plain bytes and offsets), somebody
runs its writes and fdatasyncs (``JournalFlush.run``), and the loop delivers the
completion (``Replica.complete_flush``) as one more input. The replica is only ever
touched on the loop, so it stays a deterministic state machine whichever way the I/O ran.

Which way is measured, not configured. Handing a flush to a thread and being woken when
it is done costs the loop a thread wake-up, a self-pipe write and read and an extra loop
iteration, about as much CPU as a whole group commit on a disk that syncs in 0.1 ms
(bench/vr_throughput.py). So while recent syncs are fast the loop runs the flush itself
(inline) and delivers it at once; the messages that wait for nothing have been sent
first, so the peers' work overlaps this node's sync. When a flush is slow (a real
spinning disk, a stalled or faulty filesystem), the next ones go to the I/O thread and
the loop keeps receiving, executing and batching while the disk syncs; once the thread's
runs have been fast again for a while, flushes come back inline. One flush is in flight
at a time either way: the next batch accumulates meanwhile (docs/vr.md §2.2).

A failed sync is raised on the loop when the completion is delivered, and ends the node
like any fsync error: after one, nothing unsynced can be trusted (vr/storage.py).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Callable

from vr.journal_flush import FlushDone, JournalFlush
from vr.replica import Replica, ReplicaFlush
from vr.storage import Storage

# An inline flush slower than this sends the following ones to the thread: the loop must not
# stand still behind a slow disk.
INLINE_RUN_NS_MAX = 2_000_000
# Flushes come back inline once this many consecutive threaded runs each took less than
# INLINE_RUN_NS_ENTER (hysteresis: a disk hovering near the limit does not flap).
INLINE_AFTER_FAST_RUNS = 32
INLINE_RUN_NS_ENTER = 1_000_000


def _timed_run(journal: JournalFlush, storage: Storage) -> tuple[FlushDone, int]:
    began_ns = time.monotonic_ns()
    done = journal.run(storage)
    return done, time.monotonic_ns() - began_ns


class FlushThread:
    """Runs flushes inline or on one worker thread, at most one in flight; see the module docstring."""

    def __init__(
        self, *, storage: Storage, replica: Replica, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]
    ) -> None:
        self._storage = storage
        self._replica = replica
        self._loop = loop
        self._wake = wake
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vr-flush")
        self._in_flight: tuple[ReplicaFlush, concurrent.futures.Future[tuple[FlushDone, int]]] | None = None
        self._fast_runs = collections.deque[bool](maxlen=INLINE_AFTER_FAST_RUNS)
        self.inline = False  # the disk's speed is unknown until the thread has timed some runs
        self.flushes = 0
        self.flushes_inline = 0
        self.run_ns_max = 0  # the slowest run seen (inline or threaded)
        self.sync_wait_ns = 0  # loop time spent blocked on a flush (only at a clean stop)

    @property
    def busy(self) -> bool:
        return self._in_flight is not None

    def run_inline(self, flush: ReplicaFlush) -> None:
        """On the loop: run ``flush`` now and deliver its completion (a failed sync raises here)."""
        assert self.inline and self._in_flight is None
        done, run_ns = _timed_run(flush.journal, self._storage)
        self.flushes += 1
        self.flushes_inline += 1
        self._timed(run_ns)
        if run_ns > INLINE_RUN_NS_MAX:
            self.inline = False
            self._fast_runs.clear()
        self._replica.complete_flush(flush, done)

    def submit(self, flush: ReplicaFlush) -> None:
        """On the loop: hand ``flush`` to the thread; ``poll_completion`` delivers it when done."""
        assert self._in_flight is None, "one flush in flight at a time"
        future = self._executor.submit(_timed_run, flush.journal, self._storage)
        self._in_flight = (flush, future)
        self.flushes += 1
        future.add_done_callback(self._on_done)

    def _on_done(self, future: concurrent.futures.Future[tuple[FlushDone, int]]) -> None:
        """On the worker thread: wake the loop (which then calls ``poll_completion``)."""
        del future
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone, nobody waits
            self._loop.call_soon_threadsafe(self._wake)

    def poll_completion(self) -> bool:
        """On the loop: deliver a finished threaded flush to the replica; False if none has finished."""
        in_flight = self._in_flight
        if in_flight is None or not in_flight[1].done():
            return False
        self._in_flight = None
        flush, future = in_flight
        done, run_ns = future.result()  # a failed sync raises here
        self._timed(run_ns)
        fast_runs = self._fast_runs
        fast_runs.append(run_ns < INLINE_RUN_NS_ENTER)
        if len(fast_runs) == INLINE_AFTER_FAST_RUNS and all(fast_runs):
            self.inline = True
        self._replica.complete_flush(flush, done)
        return True

    def _timed(self, run_ns: int) -> None:
        if run_ns > self.run_ns_max:
            self.run_ns_max = run_ns

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
