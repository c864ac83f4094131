"""The WAL: group commit, verified reads, and recovery after crashes, rot, EIO and misdirects.

The safety claim every crash test checks: an op whose ``flush`` returned (so it may have
been acknowledged) is, after recovery, either held clean or marked faulty. It is never
reported as absent, and never cut.
"""

from __future__ import annotations

import random

import pytest

from vr.journal import PREPARE_WRITES_IN_FLIGHT_MAX, Journal, JournalError, JournalRecovery
from vr.layout import Layout
from vr.message import HEADER_SIZE, SECTOR_SIZE, Command, Message, Operation, make_message, root_prepare
from vr.storage import FileStorage
from vr.testing.storage import PowerCut, SimStorage, wal_sectors

CLUSTER = 7
LAYOUT = Layout(
    slot_count=64, prepare_size_max=4 * SECTOR_SIZE, snapshot_size_max=SECTOR_SIZE, view_headers_max=8
)


def make_journal(seed: int = 1, *, bugs: frozenset[str] = frozenset()) -> tuple[SimStorage, Journal]:
    storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(seed))
    journal = Journal(storage, LAYOUT, cluster=CLUSTER, replica=0, bugs=bugs)
    journal.format()
    return storage, journal


def prepares(
    first_op: int, count: int, *, parent: bytes, view: int = 1, body_size: int = 100
) -> list[Message]:
    """A hash-chained run of prepares ops first_op .. first_op+count-1."""
    out: list[Message] = []
    for op in range(first_op, first_op + count):
        body = bytes([op % 251]) * body_size
        message = make_message(
            command=Command.PREPARE, cluster=CLUSTER, body=body, op=op, view=view, parent=parent,
            operation=Operation.BATCH,
        )  # fmt: skip
        out.append(message)
        parent = message.header.checksum
    return out


def write_and_flush(journal: Journal, messages: list[Message]) -> list[Message]:
    for message in messages:
        journal.write_prepare(message)
    durable = journal.flush()
    assert [h.checksum for h in durable] == [m.header.checksum for m in messages]
    return messages


def reopen(
    storage: SimStorage, *, op_checkpoint: int = 0, solo: bool = False, bugs: frozenset[str] = frozenset()
) -> tuple[Journal, JournalRecovery]:
    journal = Journal(storage, LAYOUT, cluster=CLUSTER, replica=0, bugs=bugs)
    return journal, journal.recover(op_checkpoint=op_checkpoint, solo=solo)


def assert_clean(journal: Journal, message: Message) -> None:
    header = message.header
    assert journal.header_for_op(header.op) == header
    assert journal.has_prepare(header)
    assert not journal.is_dirty(header.op)
    assert not journal.is_faulty(header.op)
    assert journal.read_prepare(header.op, header.checksum) == message


ROOT = root_prepare(CLUSTER)


# Basic write path --------------------------------------------------------------------------------


def test_format_then_recover_holds_only_the_root() -> None:
    storage, _ = make_journal()
    journal, recovery = reopen(storage)
    assert recovery.op_max == 0
    assert recovery.cases == {"P": 1, "L": LAYOUT.slot_count - 1}
    assert recovery.faulty_slots == ()
    assert_clean(journal, ROOT)
    assert journal.header_for_op(1) is None
    assert not journal.is_faulty(1)


def test_flushed_ops_survive_a_power_cut_clean() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum, body_size=5000))
    storage.crash()
    journal, recovery = reopen(storage)
    assert recovery.op_max == 10
    assert recovery.faulty_slots == ()
    for message in messages:
        assert_clean(journal, message)
    assert journal.op_max() == 10


def test_staged_prepare_is_not_durable_and_not_clean_until_flush() -> None:
    storage, journal = make_journal()
    (message,) = prepares(1, 1, parent=ROOT.header.checksum)
    journal.write_prepare(message)
    assert journal.header_for_op(1) == message.header
    assert journal.is_dirty(1)
    assert not journal.has_prepare(message.header)
    assert journal.read_prepare(1, message.header.checksum) == message  # served from memory
    storage.crash()
    journal, recovery = reopen(storage)
    assert journal.header_for_op(1) is None
    assert not journal.is_faulty(1)
    assert recovery.op_max == 0


def test_group_commit_costs_two_syncs_for_a_batch() -> None:
    storage, journal = make_journal()
    before = storage.sync_count
    write_and_flush(journal, prepares(1, 20, parent=ROOT.header.checksum))
    assert storage.sync_count - before == 2
    assert journal.flush() == []  # nothing staged: no I/O at all
    assert storage.sync_count - before == 2


def test_group_commit_merges_writes_to_one_header_sector() -> None:
    storage, journal = make_journal()
    writes_before = storage.write_count
    write_and_flush(journal, prepares(1, 20, parent=ROOT.header.checksum))
    # 20 prepare writes + 1 header sector (slots 1..20 share the first 32-header sector).
    assert storage.write_count - writes_before == 21


def test_more_than_the_in_flight_limit_is_flushed_in_groups() -> None:
    layout = Layout(
        slot_count=256, prepare_size_max=SECTOR_SIZE, snapshot_size_max=SECTOR_SIZE, view_headers_max=8
    )
    storage = SimStorage(layout.size_bytes, rng=random.Random(3))
    journal = Journal(storage, layout, cluster=CLUSTER, replica=0)
    journal.format()
    count = PREPARE_WRITES_IN_FLIGHT_MAX + 10
    messages = prepares(1, count, parent=ROOT.header.checksum)
    before = storage.sync_count
    for message in messages:
        journal.write_prepare(message)
    assert len(journal.flush()) == count
    assert storage.sync_count - before == 4


def test_real_file_journal_survives_reopen(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "replica.vr"  # type: ignore[operator]
    with FileStorage(path, size_bytes=LAYOUT.size_bytes, create=True) as storage:
        journal = Journal(storage, LAYOUT, cluster=CLUSTER, replica=1)
        journal.format()
        syncs = storage.sync_count
        messages = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum, body_size=6000))
        assert storage.sync_count - syncs == 2
    with FileStorage(path, size_bytes=LAYOUT.size_bytes) as storage:
        journal = Journal(storage, LAYOUT, cluster=CLUSTER, replica=1)
        recovery = journal.recover(op_checkpoint=0, solo=True)
        assert recovery.op_max == 5
        for message in messages:
            assert_clean(journal, message)


# Crashes in the middle of a flush -----------------------------------------------------------------


def test_torn_append_above_the_head_is_cut() -> None:
    """Power cut while the prepares of ops 6..8 were in flight, each torn: provably a torn append."""
    storage, journal = make_journal()
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    for message in prepares(6, 3, parent=acked[-1].header.checksum):
        journal.write_prepare(message)
    storage.arm_power_cut(after_syncs=1)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    journal, recovery = reopen(storage)
    assert recovery.torn_ops == (6, 7, 8)
    assert recovery.faulty_slots == ()
    assert recovery.op_max == 5
    for message in acked:
        assert_clean(journal, message)
    for op in (6, 7, 8):
        assert journal.header_for_op(op) is None
        assert not journal.is_faulty(op)
    # The cut was made durable: a second recovery sees never-used slots, not torn ones.
    storage.crash()
    _, again = reopen(storage)
    assert again.torn_ops == ()
    assert again.faulty_slots == ()


def test_torn_header_sector_keeps_every_acked_op_held_or_faulty() -> None:
    """Power cut while the header sector of ops 6..8 was in flight: the prepares are durable, but a
    torn sector takes the redundant headers of ops 1..5 with it. Nothing acked may vanish."""
    storage, journal = make_journal(seed=5)
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    in_flight = prepares(6, 3, parent=acked[-1].header.checksum)
    for message in in_flight:
        journal.write_prepare(message)
    storage.arm_power_cut(after_syncs=2)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    journal, recovery = reopen(storage)
    assert recovery.torn_ops == ()
    # Never-used slots above the head whose headers the tear took are discarded (stale), never
    # an acked op's slot.
    assert not set(recovery.cut_slots) & {journal.slot_for_op(m.header.op) for m in acked + in_flight}
    for message in acked:
        assert journal.has_prepare(message.header) or journal.is_faulty(message.header.op)
        # The intact prepare can still be served to peers (and re-staged) by (op, checksum).
        assert journal.read_prepare(message.header.op, message.header.checksum) == message


def test_torn_header_sector_alone_is_fixed_from_the_intact_prepares() -> None:
    """A single replica trusts its intact prepares (cases D/E fix): everything durable comes back."""
    storage, journal = make_journal(seed=5)
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    in_flight = prepares(6, 3, parent=acked[-1].header.checksum)
    for message in in_flight:
        journal.write_prepare(message)
    storage.arm_power_cut(after_syncs=2)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    journal, recovery = reopen(storage, solo=True)
    assert recovery.faulty_slots == ()
    for message in acked + in_flight:
        assert_clean(journal, message)


@pytest.mark.parametrize("seed", range(60))
def test_random_crashes_never_lose_an_acked_op(seed: int) -> None:
    """Random batches and power cuts at random syncs: an op whose flush returned is held or faulty,
    and no acked op is ever cut as a torn append."""
    rng = random.Random(seed)
    storage, journal = make_journal(seed=seed)
    acked: dict[int, Message] = {}
    parent, next_op = ROOT.header.checksum, 1
    for _ in range(rng.randrange(3, 16)):
        journal.set_op_checkpoint(max(journal.op_checkpoint, next_op - 40))  # checkpoint as a replica would
        batch = prepares(next_op, rng.randrange(1, 8), parent=parent, body_size=rng.choice([10, 3000, 9000]))
        for message in batch:
            journal.write_prepare(message)
        if rng.random() < 0.3:
            storage.arm_power_cut(after_syncs=rng.randrange(1, 3))
        try:
            durable = journal.flush()
        except PowerCut:
            break
        acked.update((h.op, next(m for m in batch if m.header == h)) for h in durable)
        parent, next_op = batch[-1].header.checksum, batch[-1].header.op + 1
    storage.crash(land_probability=rng.random(), tear_probability=rng.random())
    journal, recovery = reopen(storage, op_checkpoint=journal.op_checkpoint)
    _assert_acked_held_or_faulty(journal, acked)
    assert not set(recovery.torn_ops) & set(acked)
    assert not {journal.slot_for_op(op) for op in acked} & set(recovery.cut_slots)


def _assert_acked_held_or_faulty(journal: Journal, acked: dict[int, Message]) -> None:
    for op, message in acked.items():
        held = journal.has_prepare(message.header)
        assert held or journal.is_faulty(op), f"acked op {op} reported absent"


# Rot, EIO, misdirects ----------------------------------------------------------------------------


def test_rotten_committed_prepare_is_faulty_never_truncated() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum, body_size=3000))
    target = wal_sectors(LAYOUT, 5)
    storage.corrupt(target.prepare_offset + HEADER_SIZE, 3000)  # the body
    journal, recovery = reopen(storage)
    assert recovery.cases.get("C") == 1
    assert recovery.faulty_slots == (5,)
    assert recovery.torn_ops == () and recovery.cut_slots == ()
    assert journal.is_faulty(5)
    # Its valid header is kept (faulty, dirty): the op stays in our log, repaired by (op, checksum).
    assert journal.header_for_op(5) == messages[4].header
    assert not journal.has_prepare(messages[4].header)
    assert journal.read_prepare(5, messages[4].header.checksum) is None
    for message in messages[:4] + messages[5:]:
        assert_clean(journal, message)
    assert journal.op_max() == 10


def test_rotten_head_prepare_is_faulty_not_a_torn_tail() -> None:
    """The newest op's prepare rotted after its header was written: its header proves the op
    existed (op_max counts it), so it is not a torn append."""
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 10).prepare_offset, HEADER_SIZE)
    journal, recovery = reopen(storage)
    assert recovery.faulty_slots == (10,)
    assert recovery.torn_ops == ()
    assert journal.is_faulty(10)
    for message in messages[:9]:
        assert_clean(journal, message)


@pytest.mark.parametrize("verbatim", [True, False])
def test_repairing_a_torn_header_from_the_intact_prepare_never_puts_the_prepare_in_flight(
    monkeypatch: pytest.MonkeyPatch, verbatim: bool
) -> None:
    """A torn header sector leaves op 3 faulty with its prepare intact; the replica repairs the slot
    from that very copy (write_prepare of the same message). Only the header is rewritten, so a
    power cut during that repair cannot tear the prepare, which may be the cluster's last copy
    (seed 283 under doubled storage stress lost committed op 26 that way). The control
    (``verbatim`` False: the prepare is rewritten as before) loses it to the same power cut."""
    if not verbatim:
        monkeypatch.setattr(Journal, "_holds_verbatim", lambda self, slot, checksum: False)
    storage, journal = make_journal(seed=5)
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 3).header_offset, HEADER_SIZE)
    journal, _ = reopen(storage)
    message = acked[2]
    assert journal.is_faulty(3) and journal.holds_intact(3, message.header.checksum)
    journal.write_prepare(message)
    storage.arm_power_cut(after_syncs=1)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    journal, _ = reopen(storage)
    survived = journal.read_prepare(3, message.header.checksum) == message
    assert survived is verbatim
    if verbatim:
        journal.write_prepare(message)
        writes = storage.write_count
        assert journal.flush() == [message.header]
        assert storage.write_count == writes + 1  # one header sector, no prepare
        assert_clean(journal, message)


def test_repairing_a_faulty_slot_makes_it_clean() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 6, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 3).prepare_offset, HEADER_SIZE)
    journal, _ = reopen(storage)
    assert journal.is_faulty(3)
    journal.set_header_as_dirty(messages[2].header)  # learned from a peer
    assert journal.header_for_op(3) == messages[2].header
    assert journal.is_dirty(3) and journal.is_faulty(3)
    assert not journal.has_prepare(messages[2].header)
    journal.write_prepare(messages[2])  # the prepare fetched by (op, checksum)
    assert journal.flush() == [messages[2].header]
    assert_clean(journal, messages[2])
    storage.crash()
    journal, recovery = reopen(storage)
    assert recovery.faulty_slots == ()
    assert_clean(journal, messages[2])


def test_planted_bug_truncates_committed_ops_at_a_checksum_mismatch() -> None:
    """The ZooKeeper/LogCabin behaviour (docs/vr.md bug #9), on only when named."""
    bug = frozenset({"truncate-on-checksum-mismatch"})
    storage, journal = make_journal()
    write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 5).prepare_offset, HEADER_SIZE)
    journal, recovery = reopen(storage, bugs=bug)
    assert recovery.faulty_slots == ()
    for op in range(5, 11):
        assert journal.header_for_op(op) is None
        assert not journal.is_faulty(op)  # the replica would now nack committed ops 5..10
    assert journal.op_max() == 4
    assert journal.counters["bug_truncated_from_op"] == 1


def test_lost_redundant_header_is_fixed_alone_and_repaired_with_peers() -> None:
    """Rot of one redundant header (case E): the prepare is intact and servable either way."""
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 4).header_offset, HEADER_SIZE)
    snapshot = storage.durable_bytes(0, LAYOUT.size_bytes)
    journal, recovery = reopen(storage)
    assert recovery.cases.get("E") == 1
    assert journal.is_faulty(4)
    assert journal.read_prepare(4, messages[3].header.checksum) == messages[3]
    # Alone: same disk, fixed locally.
    solo_storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(9))
    solo_storage.write(0, snapshot)
    solo_storage.sync()
    solo, solo_recovery = reopen(solo_storage, solo=True)
    assert solo_recovery.fixed_slots == (4,)
    assert_clean(solo, messages[3])


def test_eio_on_read_marks_the_slot_faulty() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    target = wal_sectors(LAYOUT, 4)
    storage.fail_reads(target.prepare_offset, SECTOR_SIZE)
    assert journal.read_prepare(4, messages[3].header.checksum) is None
    assert journal.is_faulty(4) and journal.is_dirty(4)
    assert not journal.has_prepare(messages[3].header)
    assert journal.header_for_op(4) == messages[3].header  # we still know what to repair
    assert journal.faulty_ops() == [4]
    assert journal.counters["read_eio"] == 1


def test_eio_at_recovery_marks_the_slot_faulty() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    storage.fail_reads(wal_sectors(LAYOUT, 2).prepare_offset, SECTOR_SIZE)
    journal, recovery = reopen(storage)
    assert recovery.faulty_slots == (2,)
    assert journal.counters["recovery_read_eio"] == 1
    storage.clear_faults()
    for message in messages[2:]:
        assert_clean(journal, message)


def test_eio_on_write_keeps_the_op_dirty_until_a_later_flush() -> None:
    storage, journal = make_journal()
    messages = prepares(1, 3, parent=ROOT.header.checksum)
    storage.fail_writes(wal_sectors(LAYOUT, 2).prepare_offset, SECTOR_SIZE)
    for message in messages:
        journal.write_prepare(message)
    assert [h.op for h in journal.flush()] == [1, 3]
    assert journal.is_dirty(2) and not journal.has_prepare(messages[1].header)
    storage.clear_faults()
    assert [h.op for h in journal.flush()] == [2]
    for message in messages:
        assert_clean(journal, message)


def test_misdirected_prepare_is_rejected_at_runtime_and_at_recovery() -> None:
    """A valid prepare found at the wrong slot passes its checksums but not its position."""
    storage, journal = make_journal()
    messages = prepares(1, 5, parent=ROOT.header.checksum)
    intended = wal_sectors(LAYOUT, 3).prepare_offset
    storage.misdirect_next_write(
        intended_offset=intended, landed_offset=wal_sectors(LAYOUT, 20).prepare_offset
    )
    write_and_flush(journal, messages)  # the disk reported success
    assert journal.read_prepare(3, messages[2].header.checksum) is None
    assert journal.is_faulty(3)
    storage.crash()
    journal, recovery = reopen(storage)
    assert journal.is_faulty(3)  # header says op 3, prepare slot still reserved: case K
    assert recovery.cases.get("K") == 1
    # The valid header is kept (faulty, dirty): op 3 still counts in our log and head, it is
    # repaired by (op, checksum), and it is never reported as "never had it".
    assert journal.header_for_op(3) == messages[2].header
    assert not journal.has_prepare(messages[2].header)
    assert 3 in journal.faulty_ops()
    assert journal.header_for_op(20) is None
    assert 20 in recovery.torn_ops  # op 3's bytes in slot 20 look like a torn append above the head


def test_lost_prepare_of_the_head_keeps_the_head() -> None:
    """The newest op's prepare write was lost (misdirected) after its header was written: the
    head stays at that op, faulty, instead of shrinking to the op before it."""
    storage, journal = make_journal()
    messages = prepares(1, 5, parent=ROOT.header.checksum)
    storage.misdirect_next_write(
        intended_offset=wal_sectors(LAYOUT, 5).prepare_offset,
        landed_offset=wal_sectors(LAYOUT, 20).prepare_offset,
    )
    write_and_flush(journal, messages)
    storage.crash()
    journal, recovery = reopen(storage)
    assert recovery.op_max == 5
    assert journal.header_for_op(5) == messages[4].header and journal.is_faulty(5)


def test_copied_entry_at_the_wrong_slot_is_not_accepted() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    source = storage.read(wal_sectors(LAYOUT, 3).prepare_offset, SECTOR_SIZE)
    storage.write(wal_sectors(LAYOUT, 4).prepare_offset, source)
    storage.sync()
    assert journal.read_prepare(4, messages[3].header.checksum) is None
    assert journal.counters["read_misdirected"] == 1
    journal, recovery = reopen(storage)
    assert journal.is_faulty(4)
    assert recovery.faulty_slots == (4,)


def test_nonzero_padding_is_rejected() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 2, parent=ROOT.header.checksum, body_size=100))
    offset = wal_sectors(LAYOUT, 1).prepare_offset
    sector = bytearray(storage.read(offset, SECTOR_SIZE))
    sector[SECTOR_SIZE - 1] = 0xFF
    storage.write(offset, bytes(sector))
    storage.sync()
    assert journal.read_prepare(1, messages[0].header.checksum) is None
    assert journal.is_faulty(1)


def test_every_slot_faulty_refuses_to_start() -> None:
    storage, journal = make_journal()
    write_and_flush(journal, prepares(1, 3, parent=ROOT.header.checksum))
    storage.fail_reads(LAYOUT.wal_headers_offset, LAYOUT.wal_headers_size + LAYOUT.wal_prepares_size)
    with pytest.raises(JournalError) as error:
        reopen(storage)
    assert error.value.reason == "wal-invalid"


def test_single_replica_refuses_to_start_with_a_faulty_slot() -> None:
    storage, journal = make_journal()
    write_and_flush(journal, prepares(1, 6, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 3).prepare_offset, HEADER_SIZE)
    with pytest.raises(JournalError) as error:
        reopen(storage, solo=True)
    assert error.value.reason == "solo-faulty"


# Truncation, wrap-around, the checkpoint window ----------------------------------------------------


def test_remove_entries_from_is_durable_after_flush() -> None:
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum))
    journal.remove_entries_from(8)
    assert journal.op_max() == 7
    assert journal.header_for_op(8) is None and not journal.is_faulty(8)
    assert journal.flush() == []
    storage.crash()
    journal, recovery = reopen(storage)
    assert recovery.op_max == 7
    assert recovery.faulty_slots == ()
    for message in messages[:7]:
        assert_clean(journal, message)
    for op in (8, 9, 10):
        assert journal.header_for_op(op) is None


def test_truncate_then_rewrite_same_ops_in_a_new_view() -> None:
    storage, journal = make_journal()
    old = write_and_flush(journal, prepares(1, 6, parent=ROOT.header.checksum, view=1))
    journal.remove_entries_from(5)
    new = prepares(5, 3, parent=old[3].header.checksum, view=2)
    write_and_flush(journal, new)
    storage.crash()
    journal, _ = reopen(storage)
    for message in old[:4] + new:
        assert_clean(journal, message)


def test_wrap_around_keeps_the_window_after_the_checkpoint() -> None:
    storage, journal = make_journal()
    parent = ROOT.header.checksum
    messages: list[Message] = []
    for first in range(1, 151, 10):
        journal.set_op_checkpoint(max(0, first - 40))  # the replica checkpoints as it goes
        batch = write_and_flush(journal, prepares(first, 10, parent=parent))
        parent = batch[-1].header.checksum
        messages.extend(batch)
    storage.crash()
    journal, recovery = reopen(storage, op_checkpoint=100)
    assert recovery.op_max == 150
    assert recovery.faulty_slots == ()
    for message in messages[-64:]:
        assert_clean(journal, message)
    assert journal.header_for_op(150 - 64) is None


def test_ops_beyond_the_checkpoint_window_are_cut() -> None:
    """With op_checkpoint 0 the WAL may hold ops up to 64; a journal that ran to op 80 (its
    checkpoint not recorded, as in a stale superblock) has ops 65..80 beyond: they are cut."""
    storage, journal = make_journal(seed=2)
    parent = ROOT.header.checksum
    journal.set_op_checkpoint(20)
    for first in range(1, 81, 10):
        parent = write_and_flush(journal, prepares(first, 10, parent=parent))[-1].header.checksum
    journal, recovery = reopen(storage, op_checkpoint=0)
    assert recovery.cases.get("H") == 16
    assert journal.op_max() == 64
    assert recovery.faulty_slots == ()


def test_writing_past_the_checkpoint_window_is_a_programming_error() -> None:
    """Op checkpoint + slot_count + 1 would overwrite an op the snapshot does not hold yet."""
    _, journal = make_journal()
    (message,) = prepares(LAYOUT.slot_count + 1, 1, parent=ROOT.header.checksum)
    with pytest.raises(AssertionError, match="not yet checkpointed"):
        journal.write_prepare(message)
    journal.set_op_checkpoint(1)
    journal.write_prepare(message)
    with pytest.raises(AssertionError):
        journal.set_op_checkpoint(0)


def test_a_newer_belief_drops_the_staged_older_version() -> None:
    """A header learned from a peer for the same op but another version supersedes a staged
    prepare: the flush must not report the old version durable, and the slot stays dirty."""
    _storage, journal = make_journal()
    (old,) = prepares(1, 1, parent=ROOT.header.checksum, view=1)
    (new,) = prepares(1, 1, parent=ROOT.header.checksum, view=2)
    journal.write_prepare(old)
    journal.set_header_as_dirty(new.header)
    assert journal.flush() == []
    assert journal.is_dirty(1)
    assert journal.header_for_op(1) == new.header
    assert not journal.has_prepare(old.header)
    journal.write_prepare(new)
    assert journal.flush() == [new.header]
    assert_clean(journal, new)


def test_flush_reports_durable_when_the_belief_is_an_equal_header_object() -> None:
    _storage, journal = make_journal()
    (message,) = prepares(1, 1, parent=ROOT.header.checksum)
    journal.write_prepare(message)
    journal.set_header_as_dirty(message.header.replace())  # equal fields, distinct object
    assert journal.flush() == [message.header]
    assert_clean(journal, message)


def test_header_torn_above_the_head_over_a_checkpointed_prepare_is_stale_not_faulty() -> None:
    """Slot 5 holds op 5 (long checkpointed); its window op 69 is above the head (op 66). A torn
    neighbour header write destroys H(5). Op 69 was never written there (its prepare would show),
    so the slot is discarded, not left faulty, and the head stays certain."""
    storage, journal = make_journal()
    parent = ROOT.header.checksum
    for first in range(1, 67, 11):
        journal.set_op_checkpoint(max(0, first - 20))
        parent = write_and_flush(journal, prepares(first, 11, parent=parent))[-1].header.checksum
    journal.set_op_checkpoint(50)
    storage.corrupt(wal_sectors(LAYOUT, 5).header_offset, HEADER_SIZE)
    journal, recovery = reopen(storage, op_checkpoint=50)
    assert recovery.op_max == 66
    assert recovery.faulty_slots == ()
    assert 5 in recovery.cut_slots
    assert journal.counters["stale_cut"] == 1
    assert not journal.is_faulty(69)


def test_header_lost_below_the_head_is_still_faulty() -> None:
    """The same damage to a slot whose window op is at or below the head is a real hole: faulty."""
    storage, journal = make_journal()
    messages = write_and_flush(journal, prepares(1, 20, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 5).header_offset, HEADER_SIZE)
    journal, recovery = reopen(storage, op_checkpoint=0)
    assert recovery.faulty_slots == (5,)
    assert journal.read_prepare(5, messages[4].header.checksum) == messages[4]


def test_rot_of_both_copies_above_the_head_blocks_every_cut() -> None:
    """Both copies of an above-head slot unreadable is not a crash pattern: the head may hide
    there, so even the provably torn slots are kept faulty."""
    storage, journal = make_journal()
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    for message in prepares(6, 2, parent=acked[-1].header.checksum):
        journal.write_prepare(message)
    storage.arm_power_cut(after_syncs=1)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    storage.corrupt(wal_sectors(LAYOUT, 40).header_offset, HEADER_SIZE)
    storage.corrupt(wal_sectors(LAYOUT, 40).prepare_offset, HEADER_SIZE)
    journal, recovery = reopen(storage)
    assert recovery.torn_ops == ()
    assert set(recovery.faulty_slots) == {6, 7, 40}
    for message in acked:
        assert_clean(journal, message)


def test_checkpoint_ahead_of_the_journal_counts_as_the_head() -> None:
    """After a state transfer the checkpoint (20) can be ahead of every op in the WAL (10): the
    head is the checkpoint, and damage to slots whose window op lies above it is stale."""
    storage, journal = make_journal()
    write_and_flush(journal, prepares(1, 10, parent=ROOT.header.checksum))
    storage.corrupt(wal_sectors(LAYOUT, 5).header_offset, HEADER_SIZE)
    journal, recovery = reopen(storage, op_checkpoint=20)
    assert recovery.faulty_slots == ()
    assert 5 in recovery.cut_slots


def test_eio_while_cutting_a_torn_append_is_retried_not_fatal() -> None:
    storage, journal = make_journal()
    acked = write_and_flush(journal, prepares(1, 5, parent=ROOT.header.checksum))
    journal.write_prepare(prepares(6, 1, parent=acked[-1].header.checksum)[0])
    storage.arm_power_cut(after_syncs=1)
    with pytest.raises(PowerCut):
        journal.flush()
    storage.crash(land_probability=0.0, tear_probability=1.0)
    storage.fail_writes(wal_sectors(LAYOUT, 6).prepare_offset, SECTOR_SIZE)
    journal, recovery = reopen(storage)
    assert recovery.torn_ops == (6,)
    assert journal.counters["write_eio"] == 1
    assert not journal.is_faulty(6)
    storage.clear_faults()
    assert journal.flush() == []  # the staged reservation is written now
    storage.crash()
    _, again = reopen(storage)
    assert again.torn_ops == () and again.faulty_slots == ()
    assert again.cases.get("L") == LAYOUT.slot_count - 6


@pytest.mark.parametrize("seed", range(40))
def test_random_history_with_truncation_wrap_and_crashes(seed: int) -> None:
    """A model check over a long random history: appends in batches (wrapping the ring several
    times, checkpointing as a replica would), view-change truncations, EIO-free power cuts inside
    flushes, restarts. After every recovery: each acked op still in the log is held or faulty, and
    no durably truncated version ever comes back clean."""
    rng = random.Random(1000 + seed)
    storage, journal = make_journal(seed=seed)
    log: dict[int, Message] = {0: ROOT}  # op -> the version the model says is current (acked)
    truncated: set[bytes] = set()  # checksums whose truncation flush returned
    view = 1
    for _ in range(60):
        head = max(log)
        if rng.random() < 0.15 and head > journal.op_checkpoint + 1:
            cut_from = rng.randrange(journal.op_checkpoint + 1, head + 1)
            journal.remove_entries_from(cut_from)
            view += 1
            removed = [log.pop(op) for op in range(cut_from, head + 1) if op in log]
            journal.flush()
            truncated.update(m.header.checksum for m in removed)
            continue
        journal.set_op_checkpoint(max(journal.op_checkpoint, head - 30))
        batch = prepares(head + 1, rng.randrange(1, 6), parent=log[head].header.checksum, view=view)
        for message in batch:
            journal.write_prepare(message)
        if rng.random() < 0.2:
            storage.arm_power_cut(after_syncs=rng.randrange(1, 3))
        try:
            durable = journal.flush()
        except PowerCut:
            storage.crash(land_probability=rng.random(), tear_probability=rng.random())
            journal, _ = reopen(storage, op_checkpoint=journal.op_checkpoint)
            _check_model(journal, log, truncated)
            if any(journal.is_faulty(op) for op in log):
                return  # a real replica would now repair from peers; the model stops here
            continue
        finally:
            # A batch the slots already hold (rewritten after a crash) costs one sync, not two:
            # an armed cut that did not fire must not fall on the next, unguarded flush.
            storage.disarm_power_cut()
        for header in durable:
            log[header.op] = next(m for m in batch if m.header == header)
        if rng.random() < 0.1:
            storage.crash(land_probability=rng.random(), tear_probability=rng.random())
            journal, _ = reopen(storage, op_checkpoint=journal.op_checkpoint)
            _check_model(journal, log, truncated)


def _check_model(journal: Journal, log: dict[int, Message], truncated: set[bytes]) -> None:
    for op, message in log.items():
        if op <= journal.op_checkpoint or op + journal.slot_count <= max(log):
            continue  # in the snapshot, or overwritten by a later wrap
        assert journal.has_prepare(message.header) or journal.is_faulty(op), f"acked op {op} lost"
    for header in journal.headers():
        if not journal.is_dirty(header.op):
            assert header.checksum not in truncated, f"truncated op {header.op} resurrected"


def test_wrong_bytes_on_read_are_faulty_never_absent() -> None:
    """Latent read corruption over the prepare ring: every acked op is still held or faulty, and
    what read_prepare does return is byte-exact."""
    storage, journal = make_journal(seed=12)
    messages = write_and_flush(journal, prepares(1, 40, parent=ROOT.header.checksum, body_size=2000))
    storage.set_read_corruption(0.2, offset=LAYOUT.wal_prepares_offset, size=LAYOUT.wal_prepares_size)
    journal, recovery = reopen(storage)
    assert recovery.faulty_slots
    assert storage.read_corruption_count > 0
    for message in messages:
        op = message.header.op
        assert journal.has_prepare(message.header) or journal.is_faulty(op)
        served = journal.read_prepare(op, message.header.checksum)
        assert served is None or served == message


def test_reading_a_header_only_belief_is_a_miss_not_a_fault() -> None:
    """set_header_as_dirty says what we want, not what the disk holds: reading it before its
    prepare is written returns None without marking the slot faulty."""
    _storage, journal = make_journal()
    (message,) = prepares(1, 1, parent=ROOT.header.checksum)
    journal.set_header_as_dirty(message.header)
    assert journal.read_prepare(1, message.header.checksum) is None
    assert not journal.is_faulty(1)
    assert journal.is_dirty(1)
    assert journal.counters == {}
