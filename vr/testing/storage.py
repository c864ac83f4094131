"""A seeded in-memory disk for the simulator: lost and torn writes, bit rot, EIO, misdirects.

``SimStorage`` implements :class:`vr.storage.Storage` and lets a test or the simulator
inject exactly the faults a real disk has (docs/vr.md §3.1), deterministically from the
``random.Random`` it is given:

- **Crash.** Every write since the last ``sync`` is still in flight. ``crash()`` models
  a power cut: each in-flight write lands sector by sector or not at all (so later
  writes can land while earlier ones are lost), and with ``tear_probability`` one of its
  sectors is torn (part of it garbage). ``crash(power_loss=False)`` models a process
  kill: the page cache survives, every write lands.
- **Corruption at rest.** ``corrupt(offset, size)`` flips one seeded bit in that byte range,
  in both the durable and the visible copy (retrying a read does not heal it).
- **Wrong bytes on read.** ``set_read_corruption(p)``: a sector reads back with one bit
  flipped with probability p, decided by its content so a retry does not heal it.
- **EIO.** ``fail_reads``/``fail_writes`` make any access overlapping a range raise
  ``StorageIOError`` until ``clear_faults``.
- **Power cut inside a flush.** The replica's writes are synchronous, so between two
  inputs nothing is in flight; ``arm_power_cut(after_syncs=k)`` makes the k-th next
  ``sync`` raise :class:`PowerCut` *before* syncing, leaving that flush's writes in flight.
  The simulator catches it, calls ``crash()``, and rebuilds the replica from this storage.
- **Misdirected write.** ``misdirect_next_write(intended, landed)`` sends the next write
  aimed at ``intended`` to ``landed`` instead (the intended target keeps its old bytes).

Never-written sectors read back as seeded garbage, not zeros, so code that forgot to
format something fails its checksums instead of passing by luck. ``wal_sectors(layout,
op)`` names the bytes of one WAL entry so the fault atlas can corrupt at most one copy of
a committed entry.
"""

from __future__ import annotations

import errno
import hashlib
import random
from dataclasses import dataclass

from vr.layout import HEADERS_PER_SECTOR, Layout
from vr.message import HEADER_SIZE, SECTOR_SIZE
from vr.storage import StorageIOError, check_aligned

TEAR_GRANULE_SIZE = 512  # torn writes break on the old 512-byte physical sector boundary


class PowerCut(BaseException):
    """The simulated power went at an armed ``sync``: the replica object is dead.

    A BaseException so no handler in the replica (which catches StorageIOError, never
    Exception) can swallow it and carry on as if the sync had happened.
    """


@dataclass(frozen=True, slots=True)
class WalSectors:
    """Byte ranges of one WAL entry: its prepare slot and its redundant header."""

    slot: int
    prepare_offset: int
    prepare_size: int  # the whole slot; the message itself may use only its first sectors
    header_sector_offset: int
    header_offset: int  # this entry's 128 bytes inside the header sector
    header_size: int = HEADER_SIZE


def wal_sectors(layout: Layout, op: int) -> WalSectors:
    """Where op ``op``'s prepare and redundant header live in a data file of ``layout``."""
    slot = layout.slot_for_op(op)
    sector = layout.header_sector_for_slot(slot)
    sector_offset = layout.header_sector_offset(sector)
    return WalSectors(
        slot=slot,
        prepare_offset=layout.prepare_offset(slot),
        prepare_size=layout.prepare_size_max,
        header_sector_offset=sector_offset,
        header_offset=sector_offset + (slot % HEADERS_PER_SECTOR) * HEADER_SIZE,
    )


@dataclass(frozen=True, slots=True)
class _Write:
    offset: int
    data: bytes


class SimStorage:
    """An in-memory :class:`vr.storage.Storage` with seeded faults (see the module docstring)."""

    def __init__(self, size_bytes: int, *, rng: random.Random) -> None:
        assert size_bytes > 0 and size_bytes % SECTOR_SIZE == 0, size_bytes
        self._size_bytes = size_bytes
        self._rng = rng
        self._garbage_salt = rng.getrandbits(64)
        self._durable: dict[int, bytes] = {}  # sector index -> bytes that survive a power cut
        self._visible: dict[int, bytes] = {}  # sector index -> bytes written since the last sync
        self._in_flight: list[_Write] = []
        self._read_faults: list[tuple[int, int]] = []  # [start, end) byte ranges
        self._write_faults: list[tuple[int, int]] = []
        self._misdirects: dict[int, int] = {}
        self._syncs_until_power_cut: int | None = None
        self._read_corruption_probability = 0.0
        self._read_corruption_range = (0, size_bytes)
        self.read_corruption_count = 0
        self.sync_count = 0
        self.write_count = 0
        self.write_bytes = 0
        self.read_count = 0
        self.crash_count = 0
        self.torn_sector_count = 0
        self.lost_write_count = 0

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    # Storage protocol ------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> bytes:
        check_aligned(offset, size, self._size_bytes)
        self.read_count += 1
        if _overlaps(self._read_faults, offset, size):
            raise StorageIOError(errno.EIO, f"injected read error {size}@{offset}")
        first = offset // SECTOR_SIZE
        sectors = [self._sector(s) for s in range(first, first + size // SECTOR_SIZE)]
        if self._read_corruption_probability:
            sectors = [self._maybe_corrupt_on_read(first + i, content) for i, content in enumerate(sectors)]
        return b"".join(sectors)

    def write(self, offset: int, data: bytes) -> None:
        check_aligned(offset, len(data), self._size_bytes)
        if _overlaps(self._write_faults, offset, len(data)):
            raise StorageIOError(errno.EIO, f"injected write error {len(data)}@{offset}")
        self.write_count += 1
        self.write_bytes += len(data)
        landed = self._misdirects.pop(offset, offset)
        data = bytes(data)
        self._in_flight.append(_Write(landed, data))
        first = landed // SECTOR_SIZE
        for i in range(len(data) // SECTOR_SIZE):
            self._visible[first + i] = data[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE]

    def sync(self) -> None:
        if self._syncs_until_power_cut is not None:
            self._syncs_until_power_cut -= 1
            if self._syncs_until_power_cut == 0:
                self._syncs_until_power_cut = None
                raise PowerCut(f"power cut at a sync with {len(self._in_flight)} write(s) in flight")
        self.sync_count += 1
        self._durable.update(self._visible)
        self._visible.clear()
        self._in_flight.clear()

    # Faults ----------------------------------------------------------------------------------

    @property
    def in_flight_write_count(self) -> int:
        return len(self._in_flight)

    def crash(
        self, *, power_loss: bool = True, land_probability: float = 0.5, tear_probability: float = 0.8
    ) -> None:
        """Lose the process (and with ``power_loss`` the page cache): resolve every in-flight write."""
        self.crash_count += 1
        for write in self._in_flight:
            if not power_loss:
                self._land(write, range(len(write.data) // SECTOR_SIZE))
                continue
            sector_count = len(write.data) // SECTOR_SIZE
            landed = [i for i in range(sector_count) if self._rng.random() < land_probability]
            self._land(write, landed)
            if len(landed) < sector_count:
                self.lost_write_count += 1
            if self._rng.random() < tear_probability:
                self._tear(write, self._rng.randrange(sector_count))
        self._visible.clear()
        self._in_flight.clear()

    def arm_power_cut(self, *, after_syncs: int) -> None:
        """Make the ``after_syncs``-th next sync raise PowerCut without syncing (1 = the very next)."""
        assert after_syncs >= 1, after_syncs
        self._syncs_until_power_cut = after_syncs

    def disarm_power_cut(self) -> None:
        """Forget an armed power cut whose sync never came (a flush with nothing to write)."""
        self._syncs_until_power_cut = None

    def corrupt(self, offset: int, size: int) -> int:
        """Flip one seeded bit in bytes [offset, offset+size) at rest; returns the byte offset hit."""
        assert size > 0 and offset >= 0 and offset + size <= self._size_bytes, (offset, size)
        target = offset + self._rng.randrange(size)
        bit = self._rng.randrange(8)
        sector, within = divmod(target, SECTOR_SIZE)
        for copy in (self._durable, self._visible):
            if sector in copy or copy is self._durable:
                content = bytearray(copy.get(sector, self._garbage(sector)))
                content[within] ^= 1 << bit
                copy[sector] = bytes(content)
        return target

    def set_read_corruption(self, probability: float, *, offset: int = 0, size: int | None = None) -> None:
        """Sectors in [offset, offset+size) read back with one bit flipped with ``probability``.

        Whether a sector is bad is decided by a hash of (seed, sector, content), not by a fresh
        random draw, so retrying a read does not heal it (like a latent sector error that returns
        wrong bytes) and the outcome does not depend on read order; rewriting the sector may.
        """
        assert 0.0 <= probability <= 1.0, probability
        self._read_corruption_probability = probability
        self._read_corruption_range = (offset, offset + (self._size_bytes - offset if size is None else size))

    def fail_reads(self, offset: int, size: int) -> None:
        self._read_faults.append((offset, offset + size))

    def fail_writes(self, offset: int, size: int) -> None:
        self._write_faults.append((offset, offset + size))

    def clear_faults(self) -> None:
        self._read_faults.clear()
        self._write_faults.clear()
        self._misdirects.clear()

    def misdirect_next_write(self, *, intended_offset: int, landed_offset: int) -> None:
        """The next write aimed at ``intended_offset`` lands at ``landed_offset`` instead."""
        assert intended_offset % SECTOR_SIZE == 0 and landed_offset % SECTOR_SIZE == 0
        self._misdirects[intended_offset] = landed_offset

    def durable_bytes(self, offset: int, size: int) -> bytes:
        """What a power cut right now would leave in [offset, offset+size) (for assertions)."""
        check_aligned(offset, size, self._size_bytes)
        first = offset // SECTOR_SIZE
        return b"".join(
            self._durable.get(s, self._garbage(s)) for s in range(first, first + size // SECTOR_SIZE)
        )

    def visible_bytes(self, offset: int, size: int) -> bytes:
        """What a fault-free read would return now, in-flight writes included (for fault targeting)."""
        check_aligned(offset, size, self._size_bytes)
        first = offset // SECTOR_SIZE
        return b"".join(self._sector(s) for s in range(first, first + size // SECTOR_SIZE))

    # Internals -------------------------------------------------------------------------------

    def _sector(self, sector: int) -> bytes:
        content = self._visible.get(sector)
        if content is None:
            content = self._durable.get(sector)
        if content is None:
            content = self._garbage(sector)
        return content

    def _maybe_corrupt_on_read(self, sector: int, content: bytes) -> bytes:
        start, end = self._read_corruption_range
        if not start <= sector * SECTOR_SIZE < end:
            return content
        digest = hashlib.blake2b(content, digest_size=8, key=self._garbage_salt.to_bytes(8, "little"))
        draw = int.from_bytes(digest.digest(), "little") ^ (sector * 0x9E3779B97F4A7C15 % (1 << 64))
        chooser = random.Random(draw)
        if chooser.random() >= self._read_corruption_probability:
            return content
        self.read_corruption_count += 1
        flipped = bytearray(content)
        flipped[chooser.randrange(SECTOR_SIZE)] ^= 1 << chooser.randrange(8)
        return bytes(flipped)

    def _garbage(self, sector: int) -> bytes:
        return random.Random(self._garbage_salt ^ (sector * 0x9E3779B97F4A7C15)).randbytes(SECTOR_SIZE)

    def _land(self, write: _Write, sector_indexes: list[int] | range) -> None:
        first = write.offset // SECTOR_SIZE
        for i in sector_indexes:
            self._durable[first + i] = write.data[i * SECTOR_SIZE : (i + 1) * SECTOR_SIZE]

    def _tear(self, write: _Write, index: int) -> None:
        """Leave sector ``index`` of ``write`` half-written: a seeded run of 512-byte pieces is garbage."""
        self.torn_sector_count += 1
        sector = write.offset // SECTOR_SIZE + index
        content = bytearray(write.data[index * SECTOR_SIZE : (index + 1) * SECTOR_SIZE])
        granules = SECTOR_SIZE // TEAR_GRANULE_SIZE
        start = self._rng.randrange(granules)
        end = self._rng.randrange(start + 1, granules + 1)
        garbage = self._rng.randbytes((end - start) * TEAR_GRANULE_SIZE)
        content[start * TEAR_GRANULE_SIZE : end * TEAR_GRANULE_SIZE] = garbage
        self._durable[sector] = bytes(content)


def _overlaps(ranges: list[tuple[int, int]], offset: int, size: int) -> bool:
    end = offset + size
    return any(start < end and offset < stop for start, stop in ranges)


__all__ = ["PowerCut", "SimStorage", "WalSectors", "wal_sectors"]
