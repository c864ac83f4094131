"""Where each zone of a replica's data file lives: superblock copies, WAL rings, snapshots.

One file, four zones, in this order, every zone and every item sector-aligned::

    superblock copy 0 .. copy N-1   (each ``superblock_copy_size`` bytes)
    WAL header ring                 (``slot_count`` 128-byte headers, 32 per 4 KiB sector)
    WAL prepare ring                (``slot_count`` slots of ``prepare_size_max`` bytes)
    snapshot slot 0, snapshot slot 1 (each ``snapshot_size_max`` bytes)

Op ``op`` lives in WAL slot ``op % slot_count`` in both rings. The header ring is the
redundant copy of each prepare's header (docs/vr.md §2.2): written only after the prepare
itself is durable, so a crash between the two leaves a state recovery can fix locally.
Putting several headers in one sector keeps a group commit to a handful of sector writes;
the price is that one torn header-sector write damages 32 neighbouring headers, which
recovery then treats as faulty (repairable from peers), never as absent.
"""

from __future__ import annotations

from dataclasses import dataclass

from vr.message import HEADER_SIZE, PREPARE_SIZE_MAX, SECTOR_SIZE
from vr.storage import align_up

HEADERS_PER_SECTOR = SECTOR_SIZE // HEADER_SIZE

SUPERBLOCK_FIXED_SIZE = 256  # the VSR state fields before the view headers (vr/superblock.py)
SNAPSHOT_SIZE_MAX_DEFAULT = 16 * 1024 * 1024
VIEW_HEADERS_MAX_DEFAULT = 64
SNAPSHOT_SLOT_COUNT = 2


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range of the data file and the zone it lies in."""

    zone: str
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Layout:
    """The fixed geometry of one data file; every replica of a cluster uses the same one."""

    slot_count: int = 1024
    prepare_size_max: int = PREPARE_SIZE_MAX
    snapshot_size_max: int = SNAPSHOT_SIZE_MAX_DEFAULT
    view_headers_max: int = VIEW_HEADERS_MAX_DEFAULT
    superblock_copies: int = 4

    def __post_init__(self) -> None:
        assert self.slot_count >= 2, self.slot_count
        assert self.prepare_size_max >= SECTOR_SIZE, self.prepare_size_max
        assert self.prepare_size_max % SECTOR_SIZE == 0, self.prepare_size_max
        assert self.snapshot_size_max >= SECTOR_SIZE, self.snapshot_size_max
        assert self.snapshot_size_max % SECTOR_SIZE == 0, self.snapshot_size_max
        assert self.view_headers_max >= 1, self.view_headers_max
        # Open needs copies//2 equal copies and update verifies copies//2 + 1: they must overlap.
        assert self.superblock_copies >= 4 and self.superblock_copies % 2 == 0, self.superblock_copies

    # Superblock zone -------------------------------------------------------------------------

    @property
    def superblock_copy_size(self) -> int:
        return align_up(SUPERBLOCK_FIXED_SIZE + self.view_headers_max * HEADER_SIZE)

    def superblock_copy_offset(self, copy: int) -> int:
        assert 0 <= copy < self.superblock_copies, copy
        return copy * self.superblock_copy_size

    @property
    def superblock_zone_size(self) -> int:
        return self.superblock_copies * self.superblock_copy_size

    # WAL header ring -------------------------------------------------------------------------

    @property
    def wal_headers_offset(self) -> int:
        return self.superblock_zone_size

    @property
    def wal_headers_size(self) -> int:
        return align_up(self.slot_count * HEADER_SIZE)

    @property
    def wal_header_sector_count(self) -> int:
        return self.wal_headers_size // SECTOR_SIZE

    def slot_for_op(self, op: int) -> int:
        assert op >= 0, op
        return op % self.slot_count

    def header_sector_for_slot(self, slot: int) -> int:
        """Index (within the header ring) of the sector holding ``slot``'s redundant header."""
        assert 0 <= slot < self.slot_count, slot
        return slot // HEADERS_PER_SECTOR

    def header_sector_offset(self, sector: int) -> int:
        assert 0 <= sector < self.wal_header_sector_count, sector
        return self.wal_headers_offset + sector * SECTOR_SIZE

    # WAL prepare ring ------------------------------------------------------------------------

    @property
    def wal_prepares_offset(self) -> int:
        return self.wal_headers_offset + self.wal_headers_size

    @property
    def wal_prepares_size(self) -> int:
        return self.slot_count * self.prepare_size_max

    def prepare_offset(self, slot: int) -> int:
        assert 0 <= slot < self.slot_count, slot
        return self.wal_prepares_offset + slot * self.prepare_size_max

    # Snapshot slots --------------------------------------------------------------------------

    @property
    def snapshots_offset(self) -> int:
        return self.wal_prepares_offset + self.wal_prepares_size

    def snapshot_offset(self, slot: int) -> int:
        assert 0 <= slot < SNAPSHOT_SLOT_COUNT, slot
        return self.snapshots_offset + slot * self.snapshot_size_max

    # Whole file ------------------------------------------------------------------------------

    @property
    def size_bytes(self) -> int:
        return self.snapshots_offset + SNAPSHOT_SLOT_COUNT * self.snapshot_size_max

    # Where things live (for fault injection aimed by the layout) ------------------------------

    def extents_of_op(self, op: int) -> dict[str, Extent]:
        """The byte ranges that hold op ``op`` (at the moment the WAL window holds it): its prepare
        slot (the whole slot; the prepare's own header is the first sector), the first sector of
        that slot, its 128-byte redundant header, and the header-ring sector holding that header."""
        slot = self.slot_for_op(op)
        sector = self.header_sector_for_slot(slot)
        header = self.header_sector_offset(sector) + (slot % HEADERS_PER_SECTOR) * HEADER_SIZE
        return {
            "prepare": Extent("wal_prepares", self.prepare_offset(slot), self.prepare_size_max),
            "prepare_header_sector": Extent("wal_prepares", self.prepare_offset(slot), SECTOR_SIZE),
            "header": Extent("wal_headers", header, HEADER_SIZE),
            "header_sector": Extent("wal_headers", self.header_sector_offset(sector), SECTOR_SIZE),
        }

    def superblock_extents(self) -> list[Extent]:
        """Each superblock copy's byte range, copy 0 first."""
        return [
            Extent("superblock", self.superblock_copy_offset(c), self.superblock_copy_size)
            for c in range(self.superblock_copies)
        ]

    def zone_extent(self, zone: str) -> Extent:
        """The whole of one zone: superblock, wal_headers, wal_prepares or snapshots."""
        spans = {
            "superblock": (0, self.superblock_zone_size),
            "wal_headers": (self.wal_headers_offset, self.wal_headers_size),
            "wal_prepares": (self.wal_prepares_offset, self.wal_prepares_size),
            "snapshots": (self.snapshots_offset, SNAPSHOT_SLOT_COUNT * self.snapshot_size_max),
        }
        if zone not in spans:
            raise ValueError(f"unknown zone {zone!r}; zones: {', '.join(spans)}")
        return Extent(zone, *spans[zone])

    def zone_of(self, offset: int) -> str:
        """Name of the zone holding ``offset`` (for fault reports and the simulator's atlas)."""
        assert 0 <= offset < self.size_bytes, offset
        if offset < self.wal_headers_offset:
            return "superblock"
        if offset < self.wal_prepares_offset:
            return "wal_headers"
        if offset < self.snapshots_offset:
            return "wal_prepares"
        return "snapshots"


__all__ = [
    "HEADERS_PER_SECTOR",
    "SNAPSHOT_SIZE_MAX_DEFAULT",
    "SNAPSHOT_SLOT_COUNT",
    "SUPERBLOCK_FIXED_SIZE",
    "VIEW_HEADERS_MAX_DEFAULT",
    "Extent",
    "Layout",
]
