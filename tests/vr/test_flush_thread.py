"""Where a node's group commits run: inline while syncs are fast, on the I/O thread when not.

``vr.flush_thread.FlushThread`` times every run. It starts on the thread (a disk's speed is
unknown), comes inline after ``INLINE_AFTER_FAST_RUNS`` fast threaded runs, and goes back to
the thread after one inline run slower than ``INLINE_RUN_NS_MAX``, so the loop never stands
behind a slow disk twice in a row. Either way the replica gets the completion on the loop,
and what the flush wrote is on the storage.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.vr.test_journal import CLUSTER, LAYOUT, prepares, reopen
from vr import flush_thread
from vr.flush_thread import FlushThread
from vr.journal import Journal
from vr.journal_flush import FlushDone
from vr.message import root_prepare
from vr.replica import ReplicaFlush
from vr.testing.storage import SimStorage


class SlowSyncStorage(SimStorage):
    """A simulated disk whose syncs take ``sync_delay_s`` of real time (a slow or stalled disk)."""

    sync_delay_s = 0.0

    def sync(self) -> None:
        if self.sync_delay_s:
            time.sleep(self.sync_delay_s)
        super().sync()


@dataclass
class JournalOnlyReplica:
    """The one replica input a FlushThread calls: the completion, passed on to the journal."""

    journal: Journal
    completed: list[int] = field(default_factory=list)  # ops made durable, in completion order

    def complete_flush(self, flush: ReplicaFlush, done: FlushDone) -> None:
        self.completed.extend(header.op for header in self.journal.complete_flush(flush.journal, done))


class Harness:
    def __init__(self) -> None:
        self.storage = SlowSyncStorage(LAYOUT.size_bytes, rng=random.Random(1))
        journal = Journal(self.storage, LAYOUT, cluster=CLUSTER, replica=0)
        journal.format()
        self.journal = journal
        self.replica = JournalOnlyReplica(journal)
        self.loop = asyncio.new_event_loop()
        self.woken = asyncio.Event()
        self.io = FlushThread(
            storage=self.storage,
            replica=self.replica,  # type: ignore[arg-type]
            loop=self.loop,
            wake=self.woken.set,
        )
        self.parent = root_prepare(CLUSTER).header.checksum
        self.next_op = 1

    def stage(self) -> ReplicaFlush:
        message = prepares(self.next_op, 1, parent=self.parent)[0]
        self.parent = message.header.checksum
        self.next_op += 1
        self.journal.write_prepare(message)
        journal_flush = self.journal.begin_flush()
        assert journal_flush is not None
        return ReplicaFlush(journal_flush, [])

    def flush_once(self) -> str:
        """One flush the way the node's loop does it; returns where it ran."""
        flush = self.stage()
        if self.io.inline:
            self.io.run_inline(flush)
            return "inline"
        self.io.submit(flush)
        self.woken.clear()
        self.loop.run_until_complete(asyncio.wait_for(self.woken.wait(), timeout=10))
        assert self.io.poll_completion()
        return "thread"

    def close(self) -> None:
        self.io.close()
        self.loop.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.close()


def test_flushes_start_on_the_thread_and_come_inline_after_fast_runs(harness: Harness) -> None:
    fast = flush_thread.INLINE_AFTER_FAST_RUNS
    where = [harness.flush_once() for _ in range(fast + 3)]
    assert where == ["thread"] * fast + ["inline"] * 3
    assert harness.replica.completed == list(range(1, fast + 4))
    assert harness.io.flushes == fast + 3 and harness.io.flushes_inline == 3
    recovered, _ = reopen(harness.storage)
    assert recovered.header_for_op(fast + 3) is not None  # the inline flushes reached the disk


def test_one_slow_inline_flush_sends_the_next_ones_to_the_thread_until_the_disk_is_fast_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush_thread, "INLINE_AFTER_FAST_RUNS", 4)
    monkeypatch.setattr(flush_thread, "INLINE_RUN_NS_MAX", 20_000_000)
    monkeypatch.setattr(flush_thread, "INLINE_RUN_NS_ENTER", 10_000_000)
    harness.io = FlushThread(
        storage=harness.storage,
        replica=harness.replica,  # type: ignore[arg-type]
        loop=harness.loop,
        wake=harness.woken.set,
    )
    assert [harness.flush_once() for _ in range(5)] == ["thread"] * 4 + ["inline"]

    harness.storage.sync_delay_s = 0.03  # two syncs per flush: 60 ms, over the 20 ms limit
    assert harness.flush_once() == "inline"  # the slow one: it is what shows the disk is slow
    assert not harness.io.inline and harness.io.run_ns_max > 20_000_000
    assert [harness.flush_once() for _ in range(6)] == ["thread"] * 6  # slow runs do not count

    harness.storage.sync_delay_s = 0.0
    assert [harness.flush_once() for _ in range(5)] == ["thread"] * 4 + ["inline"]
    assert harness.replica.completed == list(range(1, 18))


def test_the_loop_keeps_running_while_a_slow_flush_is_on_the_thread(harness: Harness) -> None:
    harness.storage.sync_delay_s = 0.1
    ticks = 0

    async def tick_until_woken() -> None:
        nonlocal ticks
        while not harness.woken.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    harness.io.submit(harness.stage())
    harness.woken.clear()
    harness.loop.run_until_complete(asyncio.wait_for(tick_until_woken(), timeout=10))
    assert harness.io.poll_completion() and harness.replica.completed == [1]
    assert ticks >= 5  # 200 ms of syncs; the loop ran meanwhile
