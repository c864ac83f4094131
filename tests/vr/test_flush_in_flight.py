"""A journal flush in flight: staging goes on while its I/O runs, and a crash may stop it anywhere.

``Journal.begin_flush`` freezes what is staged into a plan; the node runs the plan on its I/O
thread while the replica keeps staging, truncating and reading, and ``complete_flush`` takes the
result in (docs/vr.md §2.2). What these tests hold to: nothing becomes clean before the flush
that wrote it completes; an entry whose belief moved while it was being written is not taken
as clean; what was staged meanwhile is written by the next flush; and a crash at any point of
a flush (a process kill or a power cut) never costs an op whose flush had completed.
"""

from __future__ import annotations

import random

import pytest

from tests.vr.test_journal import CLUSTER, LAYOUT, make_journal, prepares, reopen, write_and_flush
from vr.journal import Journal
from vr.message import Command, Operation, make_message, root_prepare
from vr.testing.storage import SimStorage


def test_staging_reading_and_truncating_while_a_flush_is_in_flight() -> None:
    storage, journal = make_journal()
    first = prepares(1, 3, parent=root_prepare(CLUSTER).header.checksum)
    for message in first:
        journal.write_prepare(message)
    flush = journal.begin_flush()
    assert flush is not None and journal.flush_in_flight
    with pytest.raises(AssertionError, match="already in flight"):
        journal.begin_flush()
    # Meanwhile: op 3 is truncated by a view change and staged again as another version, op 4
    # follows it; op 2 is read back (from memory: its write may be half done).
    journal.remove_entries_from(3)
    other3 = make_message(
        command=Command.PREPARE, cluster=CLUSTER, body=b"other", op=3, view=2,
        parent=first[1].header.checksum, operation=Operation.BATCH,
    )  # fmt: skip
    journal.write_prepare(other3)
    op4 = prepares(4, 1, parent=other3.header.checksum, view=2)[0]
    journal.write_prepare(op4)
    assert journal.read_prepare(2, first[1].header.checksum) is first[1]
    assert not any(journal.has_prepare(m.header) for m in first)

    durable = journal.complete_flush(flush, flush.run(storage))
    assert [h.op for h in durable] == [1, 2]  # op 3's belief moved on while it was written
    assert journal.has_prepare(first[0].header) and journal.has_prepare(first[1].header)
    assert not journal.has_prepare(other3.header) and journal.is_dirty(3)
    assert [h.checksum for h in journal.flush()] == [other3.header.checksum, op4.header.checksum]

    recovered, _ = reopen(storage)
    for message in (first[0], first[1], other3, op4):
        assert recovered.has_prepare(message.header), message.header.short()


@pytest.mark.parametrize("power_loss", [False, True])
def test_a_crash_anywhere_in_a_flush_keeps_every_op_of_the_flushes_that_completed(power_loss: bool) -> None:
    parent = root_prepare(CLUSTER).header.checksum
    durable = prepares(1, 3, parent=parent)
    in_flight = prepares(4, 3, parent=durable[-1].header.checksum)
    _, probe = make_journal()
    for message in in_flight:
        probe.write_prepare(message)
    plan = probe.begin_flush()
    assert plan is not None
    for seed in range(3):
        for io_max in range(plan.io_count + 1):
            storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(seed * 100 + io_max))
            journal = Journal(storage, LAYOUT, cluster=CLUSTER, replica=0)
            journal.format()
            write_and_flush(journal, durable)
            for message in in_flight:
                journal.write_prepare(message)
            flush = journal.begin_flush()
            assert flush is not None
            done = flush.run(storage, io_max=io_max)
            assert done.io_done == io_max
            storage.crash(power_loss=power_loss)  # the completion never arrives
            recovered, _ = reopen(storage)
            for message in durable:
                assert recovered.has_prepare(message.header), (io_max, message.header.short())
            for message in in_flight:
                # Never acked (its flush did not complete): kept clean, kept faulty, or cut;
                # without a power loss every issued write landed, so nothing is lost at all.
                header = recovered.header_for_op(message.header.op)
                assert header is None or header.checksum == message.header.checksum
                if not power_loss and io_max == plan.io_count:
                    assert recovered.has_prepare(message.header)
