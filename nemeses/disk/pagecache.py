"""faultfs's own page cache: what a file holds since its last fsync, kept apart from the disk.

A write lands here, never on the backing file; ``fsync`` writes the file's dirty pages
to the backing file and fsyncs it. So the backing file is always exactly "what survived
the last fsync", and a power cut is :meth:`DirtyFile.drop`: forget the dirty pages (as
LazyFS does). A torn write keeps a seeded subset of the sectors of the file's last write
before dropping the rest: a disk that was writing that range when the power went may
have finished any of its sectors, and only those.

Pages are ``PAGE_SIZE`` bytes, filled from the backing file on first touch (a partial
write must not zero the rest of the page). The logical size is the larger of the backing
file's size and the end of the furthest write; truncates go straight through (faultfs
treats them as metadata, durable at once: documented in docs/contracts.md).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

PAGE_SIZE = 4096
SECTOR_SIZE = 4096


@dataclass(slots=True)
class PowerCut:
    """What a power cut did to one file: the ranges lost and the sectors a torn write kept."""

    dropped_bytes: int
    dropped_ranges: list[tuple[int, int]]  # (offset, length), merged, in offset order
    torn_kept: list[tuple[int, int]]  # sectors of the last write written to disk anyway


@dataclass(slots=True)
class DirtyFile:
    """One inode's unsynced pages. Not thread-safe: the daemon holds its lock around every call."""

    pages: dict[int, bytearray] = field(default_factory=dict)
    size: int | None = None  # logical size when a write went past the backing file's end
    last_write: tuple[int, int] | None = None  # (offset, length) of the latest write, for torn writes

    @property
    def dirty(self) -> bool:
        return bool(self.pages) or self.size is not None

    def dirty_bytes(self) -> int:
        return len(self.pages) * PAGE_SIZE

    def logical_size(self, backing_size: int) -> int:
        return backing_size if self.size is None else max(self.size, backing_size)

    def write(self, fd: int, offset: int, data: bytes) -> None:
        """Stage ``data`` at ``offset`` over the backing file read through ``fd``."""
        if not data:
            return
        end = offset + len(data)
        for index in range(offset // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1):
            start = max(offset, index * PAGE_SIZE)
            stop = min(end, (index + 1) * PAGE_SIZE)
            if stop - start == PAGE_SIZE:  # a whole page: nothing of the old one shows through
                self.pages[index] = bytearray(data[start - offset : stop - offset])
                continue
            page = self.pages.get(index)
            if page is None:
                page = bytearray(os.pread(fd, PAGE_SIZE, index * PAGE_SIZE))
                page.extend(bytes(PAGE_SIZE - len(page)))
                self.pages[index] = page
            page[start - index * PAGE_SIZE : stop - index * PAGE_SIZE] = data[start - offset : stop - offset]
        backing = os.fstat(fd).st_size
        if end > self.logical_size(backing):
            self.size = end
        self.last_write = (offset, len(data))

    def read(self, fd: int, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` as a reader sees them: the backing file under the dirty pages."""
        logical = self.logical_size(os.fstat(fd).st_size)
        size = max(0, min(size, logical - offset))
        if size == 0:
            return b""
        out = bytearray(os.pread(fd, size, offset))
        out.extend(bytes(size - len(out)))
        end = offset + size
        for index in range(offset // PAGE_SIZE, (end - 1) // PAGE_SIZE + 1):
            page = self.pages.get(index)
            if page is None:
                continue
            start = max(offset, index * PAGE_SIZE)
            stop = min(end, (index + 1) * PAGE_SIZE)
            out[start - offset : stop - offset] = page[start - index * PAGE_SIZE : stop - index * PAGE_SIZE]
        return bytes(out)

    def flush(self, fd: int) -> int:
        """Write every dirty page to the backing file (not synced: the caller fsyncs); bytes written."""
        logical = self.logical_size(os.fstat(fd).st_size)
        written = 0
        for index in sorted(self.pages):
            start = index * PAGE_SIZE
            if start >= logical:
                continue
            page = self.pages[index][: min(PAGE_SIZE, logical - start)]
            os.pwrite(fd, page, start)
            written += len(page)
        if self.size is not None and os.fstat(fd).st_size < self.size:
            os.ftruncate(fd, self.size)
        self.clear()
        return written

    def truncate(self, length: int) -> None:
        """The file was truncated to ``length`` (on the backing file too): forget pages past it."""
        for index in [i for i in self.pages if i * PAGE_SIZE >= length]:
            del self.pages[index]
        tail = length // PAGE_SIZE
        if length % PAGE_SIZE and tail in self.pages:
            page = self.pages[tail]
            cut = length % PAGE_SIZE
            page[cut:] = bytes(PAGE_SIZE - cut)
        if self.size is not None:
            self.size = length

    def clear(self) -> None:
        self.pages.clear()
        self.size = None
        self.last_write = None

    def power_cut(self, fd: int | None, *, torn: bool, rng: random.Random) -> PowerCut:
        """Lose every unsynced byte; with ``torn``, first write a seeded, non-empty, proper subset of
        the last write's sectors to the backing file (through ``fd``), as a disk mid-write would."""
        kept: list[tuple[int, int]] = []
        if torn and fd is not None and self.last_write is not None:
            offset, length = self.last_write
            first = offset // SECTOR_SIZE
            last = (offset + length - 1) // SECTOR_SIZE
            sectors = list(range(first, last + 1))
            # A proper, non-empty subset: a one-sector write cannot tear (sectors are atomic), so it
            # is simply lost with the rest.
            count = rng.randint(1, len(sectors) - 1) if len(sectors) >= 2 else 0
            for sector in sorted(rng.sample(sectors, count)):
                start = max(offset, sector * SECTOR_SIZE)
                stop = min(offset + length, (sector + 1) * SECTOR_SIZE)
                page = self.pages.get(start // PAGE_SIZE)
                if page is None:
                    continue
                base = (start // PAGE_SIZE) * PAGE_SIZE
                os.pwrite(fd, bytes(page[start - base : stop - base]), start)
                kept.append((start, stop - start))
            if kept:
                os.fsync(fd)
        ranges = _merge([(i * PAGE_SIZE, PAGE_SIZE) for i in sorted(self.pages)])
        dropped = sum(length for _, length in ranges)
        self.clear()
        return PowerCut(dropped_bytes=dropped, dropped_ranges=ranges, torn_kept=kept)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for offset, length in ranges:
        if merged and merged[-1][0] + merged[-1][1] == offset:
            merged[-1] = (merged[-1][0], merged[-1][1] + length)
        else:
            merged.append((offset, length))
    return merged


__all__ = ["PAGE_SIZE", "SECTOR_SIZE", "DirtyFile", "PowerCut"]
