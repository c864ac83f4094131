"""The superblock: quorum open, verified update, torn updates, misdirected copies, monotonic state."""

from __future__ import annotations

import dataclasses
import random

import pytest

from vr.layout import Layout
from vr.message import SECTOR_SIZE, Command, Operation, make_header
from vr.snapshot import SnapshotRef
from vr.storage import FileStorage
from vr.superblock import SuperBlock, SuperBlockError, VSRState
from vr.testing.storage import PowerCut, SimStorage

LAYOUT = Layout(
    slot_count=64, prepare_size_max=SECTOR_SIZE, snapshot_size_max=SECTOR_SIZE, view_headers_max=8
)
ROOT_REF = SnapshotRef(op=0, checksum=bytes(16), size=0, slot=0)
STATE = VSRState(cluster=3, replica=1, replica_count=3, view=0, log_view=0, commit_max=0, checkpoint=ROOT_REF)


def formatted(seed: int = 1) -> tuple[SimStorage, SuperBlock]:
    storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(seed))
    superblock = SuperBlock(storage, LAYOUT)
    superblock.format(STATE)
    return storage, superblock


def state(view: int, *, log_view: int | None = None, commit_max: int = 0) -> VSRState:
    headers = tuple(
        make_header(command=Command.PREPARE, cluster=3, op=op, view=view, operation=Operation.BATCH)
        for op in range(1, 4)
    )
    return dataclasses.replace(
        STATE,
        view=view,
        log_view=view if log_view is None else log_view,
        commit_max=commit_max,
        view_headers=headers,
    )


def copy_offset(copy: int) -> int:
    return LAYOUT.superblock_copy_offset(copy)


def test_format_then_open_round_trips_the_state() -> None:
    storage, _ = formatted()
    superblock = SuperBlock(storage, LAYOUT)
    assert superblock.open() == STATE
    assert superblock.sequence == 1


def test_update_is_durable_and_chains_sequences() -> None:
    storage, superblock = formatted()
    superblock.update(state(2, commit_max=5))
    superblock.update(state(3, log_view=2, commit_max=7))
    storage.crash()
    reopened = SuperBlock(storage, LAYOUT)
    assert reopened.open() == state(3, log_view=2, commit_max=7)
    assert reopened.sequence == 3
    assert reopened.state.view_headers[0].op == 1


def test_update_writes_copies_one_at_a_time() -> None:
    """A sync after each copy: at most one copy is ever in flight, so a power cut can tear one only."""
    storage, superblock = formatted()
    before = storage.sync_count
    superblock.update(state(1))
    assert storage.sync_count - before == LAYOUT.superblock_copies


def test_never_formatted_is_not_found() -> None:
    storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(2))
    with pytest.raises(SuperBlockError) as error:
        SuperBlock(storage, LAYOUT).open()
    assert error.value.reason == "not-found"


def test_one_corrupt_copy_opens_and_is_repaired() -> None:
    storage, superblock = formatted()
    superblock.update(state(4))
    storage.corrupt(copy_offset(2), LAYOUT.superblock_copy_size)
    reopened = SuperBlock(storage, LAYOUT)
    assert reopened.open() == state(4)
    assert reopened.repaired_copy_count == 1
    # After the repair every copy is good again: even two more corruptions leave a quorum.
    storage.corrupt(copy_offset(0), LAYOUT.superblock_copy_size)
    storage.corrupt(copy_offset(1), LAYOUT.superblock_copy_size)
    assert SuperBlock(storage, LAYOUT).open() == state(4)


def test_two_corrupt_copies_still_open_three_do_not() -> None:
    storage, superblock = formatted()
    superblock.update(state(4))
    storage.corrupt(copy_offset(0), 64)
    storage.corrupt(copy_offset(3), 64)
    assert SuperBlock(storage, LAYOUT).open() == state(4)  # open quorum is 2 of 4 (and repairs)
    storage2, superblock2 = formatted(seed=2)
    superblock2.update(state(4))
    for copy in (0, 1, 3):
        storage2.corrupt(copy_offset(copy), 64)
    with pytest.raises(SuperBlockError) as error:
        SuperBlock(storage2, LAYOUT).open()
    assert error.value.reason == "quorum-lost"


def test_quorum_lost_when_the_valid_copies_disagree() -> None:
    """One copy of each of two sequences plus two rotten copies: no state has 2 copies."""
    storage, superblock = formatted()
    superblock.update(state(1))
    old_copy = storage.read(copy_offset(1), LAYOUT.superblock_copy_size)
    superblock.update(state(2))
    storage.write(copy_offset(1), old_copy)  # copy 1 holds sequence 2 (its own copy index)
    storage.sync()
    storage.corrupt(copy_offset(2), 64)
    storage.corrupt(copy_offset(3), 64)
    with pytest.raises(SuperBlockError) as error:
        SuperBlock(storage, LAYOUT).open()
    assert error.value.reason == "quorum-lost"


def test_misdirected_copy_is_not_counted() -> None:
    """Copy 0's bytes at copy 1's place pass the checksum but carry copy index 0: not counted twice."""
    storage, superblock = formatted()
    superblock.update(state(5))
    copy0 = storage.read(copy_offset(0), LAYOUT.superblock_copy_size)
    for copy in (1, 2, 3):
        storage.write(copy_offset(copy), copy0)
    storage.sync()
    reopened = SuperBlock(storage, LAYOUT)
    with pytest.raises(SuperBlockError) as error:
        reopened.open()
    assert error.value.reason == "quorum-lost"
    assert reopened.invalid_copy_count == 3


@pytest.mark.parametrize("crash_at_sync", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", range(6))
def test_torn_update_opens_at_the_old_or_new_sequence_never_a_fork(crash_at_sync: int, seed: int) -> None:
    storage, superblock = formatted(seed=seed)
    superblock.update(state(1, commit_max=1))
    storage.arm_power_cut(after_syncs=crash_at_sync)
    with pytest.raises(PowerCut):
        superblock.update(state(2, commit_max=2))
    storage.crash(land_probability=0.5, tear_probability=0.9)
    reopened = SuperBlock(storage, LAYOUT)
    opened = reopened.open()
    assert opened in (state(1, commit_max=1), state(2, commit_max=2))
    assert reopened.sequence in (2, 3)
    # The next update from whatever was opened must succeed and be the only state afterwards.
    reopened.update(state(7, commit_max=9))
    storage.crash()
    assert SuperBlock(storage, LAYOUT).open() == state(7, commit_max=9)


def test_torn_update_after_a_stale_copy_never_regresses() -> None:
    """Crash after 2 of 4 copies of sequence 3, then again during sequence 4: because open repairs
    the stale copies, the second torn update still opens at sequence 3, never back at 2."""
    storage, superblock = formatted(seed=4)
    superblock.update(state(1))  # sequence 2
    storage.arm_power_cut(after_syncs=3)  # copies 0 and 1 of sequence 3 synced, copy 2 in flight
    with pytest.raises(PowerCut):
        superblock.update(state(2))
    storage.crash(land_probability=0.0, tear_probability=1.0)
    reopened = SuperBlock(storage, LAYOUT)
    assert reopened.open() == state(2)
    assert reopened.repaired_copy_count == 2
    storage.arm_power_cut(after_syncs=2)
    with pytest.raises(PowerCut):
        reopened.update(state(3))
    storage.crash(land_probability=0.0, tear_probability=1.0)
    assert SuperBlock(storage, LAYOUT).open() == state(2)


def test_fork_is_detected() -> None:
    storage, superblock = formatted()
    superblock.update(state(1))
    storage_b, superblock_b = formatted(seed=9)
    superblock_b.update(state(2, log_view=1))
    for copy in (2, 3):
        offset = copy_offset(copy)
        storage.write(offset, storage_b.read(offset, LAYOUT.superblock_copy_size))
    storage.sync()
    with pytest.raises(SuperBlockError) as error:
        SuperBlock(storage, LAYOUT).open()
    assert error.value.reason == "fork"


def test_monotonic_fields_are_asserted() -> None:
    _, superblock = formatted()
    superblock.update(state(5, commit_max=10))
    with pytest.raises(AssertionError):
        superblock.update(state(4, commit_max=10))
    with pytest.raises(AssertionError):
        superblock.update(state(5, log_view=3, commit_max=10))
    with pytest.raises(AssertionError):
        superblock.update(state(5, commit_max=9))
    with pytest.raises(AssertionError):
        superblock.update(dataclasses.replace(state(5, commit_max=10), replica=2))
    superblock.update(state(5, commit_max=11))
    assert superblock.state.commit_max == 11


def test_log_view_above_view_is_rejected() -> None:
    with pytest.raises(AssertionError):
        dataclasses.replace(STATE, view=1, log_view=2)


def test_real_file_superblock_survives_reopen(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "replica.vr"  # type: ignore[operator]
    with FileStorage(path, size_bytes=LAYOUT.size_bytes, create=True) as storage:
        superblock = SuperBlock(storage, LAYOUT)
        superblock.format(STATE)
        superblock.update(state(2, commit_max=4))
    with FileStorage(path, size_bytes=LAYOUT.size_bytes) as storage:
        assert SuperBlock(storage, LAYOUT).open() == state(2, commit_max=4)


def test_eio_on_one_copy_still_updates_eio_on_two_fails_verification() -> None:
    storage, superblock = formatted()
    storage.fail_writes(copy_offset(1), LAYOUT.superblock_copy_size)
    superblock.update(state(1))
    assert superblock.write_error_count == 1
    assert SuperBlock(storage, LAYOUT).open() == state(1)
    storage.fail_writes(copy_offset(2), LAYOUT.superblock_copy_size)
    reopened = SuperBlock(storage, LAYOUT)
    reopened.open()
    with pytest.raises(SuperBlockError) as error:
        reopened.update(state(2))
    assert error.value.reason == "verify-failed"
    storage.clear_faults()
    assert SuperBlock(storage, LAYOUT).open() in (state(1), state(2))


def test_eio_reading_copies_counts_as_invalid() -> None:
    storage, superblock = formatted()
    superblock.update(state(3))
    storage.fail_reads(copy_offset(0), LAYOUT.superblock_copy_size)
    storage.fail_reads(copy_offset(3), LAYOUT.superblock_copy_size)
    reopened = SuperBlock(storage, LAYOUT)
    assert reopened.open() == state(3)
    assert reopened.invalid_copy_count == 2
