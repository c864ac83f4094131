"""faultfs's page cache on plain files: what a reader sees, what fsync writes, what a power cut loses."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from nemeses.disk.pagecache import PAGE_SIZE, DirtyFile


@pytest.fixture
def backing(tmp_path: Path):
    path = tmp_path / "f"
    path.write_bytes(b"o" * (3 * PAGE_SIZE))
    fd = os.open(path, os.O_RDWR)
    yield fd
    os.close(fd)


def test_writes_stay_off_disk_until_flush_and_reads_see_them(backing: int) -> None:
    cache = DirtyFile()
    cache.write(backing, 100, b"x" * 10)
    assert os.pread(backing, 3 * PAGE_SIZE, 0) == b"o" * (3 * PAGE_SIZE)  # nothing reached the disk
    seen = cache.read(backing, 0, 3 * PAGE_SIZE)
    assert seen == b"o" * 100 + b"x" * 10 + b"o" * (3 * PAGE_SIZE - 110)  # the rest of the page kept
    assert cache.flush(backing) == PAGE_SIZE
    assert os.pread(backing, 3 * PAGE_SIZE, 0) == seen
    assert not cache.dirty


def test_a_write_past_the_end_grows_the_file_only_in_the_cache(backing: int) -> None:
    cache = DirtyFile()
    cache.write(backing, 3 * PAGE_SIZE + 10, b"tail")
    assert cache.logical_size(os.fstat(backing).st_size) == 3 * PAGE_SIZE + 14
    assert cache.read(backing, 3 * PAGE_SIZE, 100) == bytes(10) + b"tail"
    assert os.fstat(backing).st_size == 3 * PAGE_SIZE
    cache.flush(backing)
    assert os.fstat(backing).st_size == 3 * PAGE_SIZE + 14


def test_power_cut_drops_exactly_the_unsynced_pages(backing: int) -> None:
    cache = DirtyFile()
    cache.write(backing, 0, b"a" * PAGE_SIZE)
    cache.flush(backing)
    synced = os.pread(backing, 3 * PAGE_SIZE, 0)
    cache.write(backing, PAGE_SIZE, b"b" * (2 * PAGE_SIZE))
    cut = cache.power_cut(backing, torn=False, rng=random.Random(1))
    assert cut.dropped_bytes == 2 * PAGE_SIZE
    assert cut.dropped_ranges == [(PAGE_SIZE, 2 * PAGE_SIZE)]
    assert cut.torn_kept == []
    assert os.pread(backing, 3 * PAGE_SIZE, 0) == synced
    assert cache.read(backing, 0, 3 * PAGE_SIZE) == synced


@pytest.mark.parametrize("seed", range(8))
def test_a_torn_write_keeps_some_but_not_all_sectors_of_the_last_write(backing: int, seed: int) -> None:
    cache = DirtyFile()
    cache.write(backing, 0, b"w" * (3 * PAGE_SIZE))
    cut = cache.power_cut(backing, torn=True, rng=random.Random(seed))
    on_disk = os.pread(backing, 3 * PAGE_SIZE, 0)
    sectors = [on_disk[i : i + PAGE_SIZE] for i in range(0, 3 * PAGE_SIZE, PAGE_SIZE)]
    kept = [i for i, s in enumerate(sectors) if s == b"w" * PAGE_SIZE]
    assert all(s in (b"w" * PAGE_SIZE, b"o" * PAGE_SIZE) for s in sectors)  # whole sectors only
    assert 1 <= len(kept) <= 2
    assert [off // PAGE_SIZE for off, _ in cut.torn_kept] == kept


def test_truncate_forgets_cached_pages_past_the_new_end(backing: int) -> None:
    cache = DirtyFile()
    cache.write(backing, 0, b"z" * (3 * PAGE_SIZE))
    os.ftruncate(backing, PAGE_SIZE + 5)
    cache.truncate(PAGE_SIZE + 5)
    assert cache.read(backing, 0, 3 * PAGE_SIZE) == b"z" * (PAGE_SIZE + 5)


def test_a_one_sector_write_cannot_tear_it_is_lost_whole(backing: int) -> None:
    for seed in range(8):
        cache = DirtyFile()
        cache.write(backing, PAGE_SIZE, b"s" * PAGE_SIZE)
        cut = cache.power_cut(backing, torn=True, rng=random.Random(seed))
        assert cut.torn_kept == []
        assert os.pread(backing, PAGE_SIZE, PAGE_SIZE) == b"o" * PAGE_SIZE
