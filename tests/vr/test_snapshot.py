"""Snapshots: alternate slots, verified reads, a crash mid-write never destroys the checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from vr.layout import Layout
from vr.message import SECTOR_SIZE
from vr.snapshot import SnapshotRef, SnapshotStore
from vr.storage import FileStorage
from vr.testing.storage import SimStorage

LAYOUT = Layout(
    slot_count=64, prepare_size_max=SECTOR_SIZE, snapshot_size_max=4 * SECTOR_SIZE, view_headers_max=8
)


def store(seed: int = 1) -> tuple[SimStorage, SnapshotStore]:
    storage = SimStorage(LAYOUT.size_bytes, rng=random.Random(seed))
    return storage, SnapshotStore(storage, LAYOUT)


def test_write_alternates_away_from_the_durable_checkpoint() -> None:
    _, snapshots = store()
    root = snapshots.write(0, b"", checkpoint=None)
    assert root.slot == 0 and root.size == 0
    first = snapshots.write(100, b"state at 100", checkpoint=root)
    assert first.slot == 1
    # The superblock still names `root`: a second attempt must not overwrite it.
    again = snapshots.write(150, b"state at 150", checkpoint=root)
    assert again.slot == 1
    second = snapshots.write(200, b"state at 200", checkpoint=again)
    assert second.slot == 0
    assert snapshots.read(again) == b"state at 150"
    assert snapshots.read(second) == b"state at 200"


def test_write_is_durable_on_return() -> None:
    storage, snapshots = store()
    data = bytes(range(256)) * 20
    ref = snapshots.write(7, data, checkpoint=None)
    storage.crash(land_probability=0.0, tear_probability=1.0)
    assert snapshots.read(ref) == data


def test_crash_while_writing_a_snapshot_keeps_the_old_checkpoint() -> None:
    storage, snapshots = store(seed=2)
    durable = snapshots.write(10, b"old" * 1000, checkpoint=None)

    class PowerCut(Exception):
        pass

    def cut() -> None:
        raise PowerCut()

    storage.sync = cut  # type: ignore[method-assign]
    with pytest.raises(PowerCut):
        snapshots.write(20, b"new" * 1000, checkpoint=durable)
    storage.crash(land_probability=0.5, tear_probability=1.0)
    assert snapshots.read(durable) == b"old" * 1000


def test_corrupt_or_unreadable_snapshot_reads_as_none() -> None:
    storage, snapshots = store(seed=3)
    ref = snapshots.write(5, b"x" * 5000, checkpoint=None)
    storage.corrupt(LAYOUT.snapshot_offset(0), 5000)
    assert snapshots.read(ref) is None
    ref1 = snapshots.write(6, b"y" * 100, checkpoint=ref)
    storage.fail_reads(LAYOUT.snapshot_offset(1), SECTOR_SIZE)
    assert snapshots.read(ref1) is None
    storage.clear_faults()
    assert snapshots.read(ref1) == b"y" * 100
    lying = SnapshotRef(op=6, checksum=ref1.checksum, size=99, slot=1)
    assert snapshots.read(lying) is None


def test_oversized_snapshot_is_refused() -> None:
    _, snapshots = store()
    with pytest.raises(ValueError, match="snapshot_size_max"):
        snapshots.write(1, bytes(LAYOUT.snapshot_size_max + 1), checkpoint=None)


def test_real_file_snapshot_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    with FileStorage(path, size_bytes=LAYOUT.size_bytes, create=True) as storage:
        ref = SnapshotStore(storage, LAYOUT).write(3, b"kv state", checkpoint=None)
        assert storage.sync_count == 1
    with FileStorage(path, size_bytes=LAYOUT.size_bytes) as storage:
        assert SnapshotStore(storage, LAYOUT).read(ref) == b"kv state"
