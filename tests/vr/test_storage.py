"""Storage: the real file (pread/pwrite/fsync) and the simulator's seeded faulty disk."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from vr.layout import Layout
from vr.message import SECTOR_SIZE
from vr.storage import FileStorage, StorageIOError
from vr.testing.storage import SimStorage, wal_sectors

SIZE = 16 * SECTOR_SIZE


def sector(fill: int) -> bytes:
    return bytes([fill]) * SECTOR_SIZE


# FileStorage -------------------------------------------------------------------------------------


def test_file_storage_round_trips_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    with FileStorage(path, size_bytes=SIZE, create=True) as storage:
        assert storage.sync_count == 0  # the create-time fsyncs are not the caller's
        storage.write(2 * SECTOR_SIZE, sector(7) + sector(8))
        storage.sync()
        assert storage.sync_count == 1
        assert storage.write_count == 1 and storage.write_bytes == 2 * SECTOR_SIZE
        assert storage.read(3 * SECTOR_SIZE, SECTOR_SIZE) == sector(8)
    assert path.stat().st_size == SIZE
    with FileStorage(path, size_bytes=SIZE) as storage:
        assert storage.read(2 * SECTOR_SIZE, 2 * SECTOR_SIZE) == sector(7) + sector(8)
        assert storage.read(0, SECTOR_SIZE) == bytes(SECTOR_SIZE)


def test_file_storage_refuses_a_missing_file_unless_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FileStorage(tmp_path / "missing.vr", size_bytes=SIZE)
    assert not (tmp_path / "missing.vr").exists()


def test_file_storage_refuses_to_create_over_existing_data(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    FileStorage(path, size_bytes=SIZE, create=True).close()
    with pytest.raises(FileExistsError):
        FileStorage(path, size_bytes=SIZE, create=True)


def test_file_storage_refuses_a_file_of_another_layout(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    FileStorage(path, size_bytes=SIZE, create=True).close()
    with pytest.raises(ValueError, match="different layout"):
        FileStorage(path, size_bytes=2 * SIZE)


def test_file_storage_short_read_is_an_io_error(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    with FileStorage(path, size_bytes=SIZE, create=True) as storage:
        os.truncate(path, SECTOR_SIZE)  # someone truncated the file under us
        with pytest.raises(StorageIOError):
            storage.read(4 * SECTOR_SIZE, SECTOR_SIZE)


def test_file_storage_rejects_unaligned_access(tmp_path: Path) -> None:
    with FileStorage(tmp_path / "replica.vr", size_bytes=SIZE, create=True) as storage:
        with pytest.raises(AssertionError):
            storage.write(100, sector(1))
        with pytest.raises(AssertionError):
            storage.read(0, 100)
        with pytest.raises(AssertionError):
            storage.read(SIZE, SECTOR_SIZE)


# SimStorage --------------------------------------------------------------------------------------


def test_sim_synced_writes_survive_a_crash_unsynced_ones_do_not() -> None:
    storage = SimStorage(SIZE, rng=random.Random(1))
    storage.write(0, sector(1))
    storage.sync()
    storage.write(0, sector(2))
    storage.write(SECTOR_SIZE, sector(3))
    assert storage.read(0, 2 * SECTOR_SIZE) == sector(2) + sector(3)  # reads see unsynced writes
    assert storage.in_flight_write_count == 2
    storage.crash(land_probability=0.0, tear_probability=0.0)
    assert storage.read(0, SECTOR_SIZE) == sector(1)
    assert storage.read(SECTOR_SIZE, SECTOR_SIZE) != sector(3)
    assert storage.in_flight_write_count == 0


def test_sim_process_crash_keeps_the_page_cache() -> None:
    storage = SimStorage(SIZE, rng=random.Random(1))
    storage.write(0, sector(4))
    storage.crash(power_loss=False)
    assert storage.read(0, SECTOR_SIZE) == sector(4)


def test_sim_torn_write_garbles_part_of_one_sector() -> None:
    storage = SimStorage(SIZE, rng=random.Random(3))
    storage.write(0, sector(5))
    storage.crash(land_probability=1.0, tear_probability=1.0)
    torn = storage.read(0, SECTOR_SIZE)
    assert torn != sector(5)
    assert storage.torn_sector_count == 1
    garbled = [i for i in range(0, SECTOR_SIZE, 512) if torn[i : i + 512] != sector(5)[:512]]
    assert garbled, "some 512-byte piece must be garbage"
    assert garbled == list(range(garbled[0], garbled[-1] + 512, 512)), "one contiguous run"


def test_sim_later_write_can_land_while_an_earlier_one_is_lost() -> None:
    """Reordering: with per-sector landing, some seed lands the second write but not the first."""
    outcomes = set()
    for seed in range(30):
        storage = SimStorage(SIZE, rng=random.Random(seed))
        storage.write(0, sector(1))
        storage.write(SECTOR_SIZE, sector(2))
        storage.crash(land_probability=0.5, tear_probability=0.0)
        outcomes.add(
            (storage.read(0, SECTOR_SIZE) == sector(1), storage.read(SECTOR_SIZE, SECTOR_SIZE) == sector(2))
        )
    assert (False, True) in outcomes and (True, False) in outcomes


def test_sim_never_written_sectors_read_as_stable_garbage() -> None:
    storage = SimStorage(SIZE, rng=random.Random(4))
    first = storage.read(5 * SECTOR_SIZE, SECTOR_SIZE)
    assert first != bytes(SECTOR_SIZE)
    assert storage.read(5 * SECTOR_SIZE, SECTOR_SIZE) == first


def test_sim_corrupt_flips_exactly_one_bit_and_persists() -> None:
    storage = SimStorage(SIZE, rng=random.Random(5))
    storage.write(0, sector(0))
    storage.sync()
    hit = storage.corrupt(100, 28)
    assert 100 <= hit < 128
    data = storage.read(0, SECTOR_SIZE)
    assert sum(bin(b).count("1") for b in data) == 1
    storage.crash()
    assert storage.read(0, SECTOR_SIZE) == data  # rot is at rest: a crash does not heal it


def test_sim_is_deterministic_from_its_seed() -> None:
    def run(seed: int) -> bytes:
        storage = SimStorage(SIZE, rng=random.Random(seed))
        for i in range(8):
            storage.write(i * SECTOR_SIZE, sector(i + 1))
        storage.corrupt(0, SIZE)
        storage.crash()
        return storage.read(0, SIZE)

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_sim_injected_eio_on_reads_and_writes() -> None:
    storage = SimStorage(SIZE, rng=random.Random(6))
    storage.fail_reads(2 * SECTOR_SIZE, 10)
    storage.fail_writes(4 * SECTOR_SIZE, SECTOR_SIZE)
    storage.read(0, 2 * SECTOR_SIZE)
    with pytest.raises(StorageIOError):
        storage.read(SECTOR_SIZE, 2 * SECTOR_SIZE)
    with pytest.raises(StorageIOError):
        storage.write(3 * SECTOR_SIZE, sector(1) + sector(2))
    assert storage.write_count == 0
    storage.clear_faults()
    storage.read(SECTOR_SIZE, 2 * SECTOR_SIZE)
    storage.write(4 * SECTOR_SIZE, sector(9))


def test_sim_misdirected_write_lands_elsewhere() -> None:
    storage = SimStorage(SIZE, rng=random.Random(7))
    storage.write(0, sector(1))
    storage.write(SECTOR_SIZE, sector(2))
    storage.sync()
    storage.misdirect_next_write(intended_offset=0, landed_offset=SECTOR_SIZE)
    storage.write(0, sector(3))
    storage.sync()
    assert storage.read(0, SECTOR_SIZE) == sector(1)
    assert storage.read(SECTOR_SIZE, SECTOR_SIZE) == sector(3)
    storage.write(0, sector(4))  # one-shot
    assert storage.read(0, SECTOR_SIZE) == sector(4)


def test_wal_sectors_locates_both_copies_of_an_entry() -> None:
    layout = Layout(
        slot_count=64, prepare_size_max=2 * SECTOR_SIZE, snapshot_size_max=SECTOR_SIZE, view_headers_max=8
    )
    where = wal_sectors(layout, 64 + 33)
    assert where.slot == 33
    assert where.prepare_offset == layout.prepare_offset(33)
    assert where.header_sector_offset == layout.header_sector_offset(1)
    assert where.header_offset == layout.header_sector_offset(1) + 1 * 128
    assert layout.zone_of(where.prepare_offset) == "wal_prepares"
    assert layout.zone_of(where.header_offset) == "wal_headers"


def test_default_layout_is_sector_aligned_and_sized() -> None:
    layout = Layout()
    assert layout.wal_headers_size == 1024 * 128
    assert layout.size_bytes % SECTOR_SIZE == 0
    for offset in (
        layout.superblock_copy_offset(3),
        layout.wal_headers_offset,
        layout.wal_prepares_offset,
        layout.snapshot_offset(1),
    ):
        assert offset % SECTOR_SIZE == 0
    assert layout.prepare_offset(1) - layout.prepare_offset(0) == 64 * 1024


def test_file_storage_use_after_close_is_a_bug_not_an_io_error(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "replica.vr", size_bytes=SIZE, create=True)
    storage.close()
    with pytest.raises(OSError) as error:
        storage.read(0, SECTOR_SIZE)
    assert not isinstance(error.value, StorageIOError)


def test_sim_read_corruption_is_stable_across_retries_and_confined_to_its_range() -> None:
    storage = SimStorage(SIZE, rng=random.Random(8))
    for i in range(16):
        storage.write(i * SECTOR_SIZE, sector(i))
    storage.sync()
    storage.set_read_corruption(0.5, offset=8 * SECTOR_SIZE)
    first = storage.read(0, SIZE)
    assert storage.read(0, SIZE) == first, "a retry must not heal (or newly break) a sector"
    bad = [i for i in range(16) if first[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE] != sector(i)]
    assert bad and all(i >= 8 for i in bad)
    assert storage.durable_bytes(0, SIZE) == b"".join(sector(i) for i in range(16)), (
        "at rest the data is intact"
    )
    storage.set_read_corruption(0.0)
    assert storage.read(0, SIZE) == b"".join(sector(i) for i in range(16))


def test_file_storage_is_locked_against_a_second_opener(tmp_path: Path) -> None:
    path = tmp_path / "replica.vr"
    with FileStorage(path, size_bytes=SIZE, create=True):
        with pytest.raises(OSError, match="locked by another process") as error:
            FileStorage(path, size_bytes=SIZE)
        assert error.value.strerror and "previous node" in error.value.strerror
    with FileStorage(path, size_bytes=SIZE) as storage:  # released on close
        assert storage.read(0, SECTOR_SIZE) == bytes(SECTOR_SIZE)
