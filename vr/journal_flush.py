"""One journal group commit, prepared on the replica and carried out anywhere (docs/vr.md §2.2).

``Journal.begin_flush`` turns what is staged into a :class:`JournalFlush`: plain bytes and
offsets, nothing that points back into the journal. :meth:`JournalFlush.run` does the I/O
(for each group: the prepare-ring writes, a sync, the header-ring sectors, a sync) and
returns a :class:`FlushDone` saying which writes and sectors failed; ``Journal.complete_flush``
then updates the journal's beliefs from it. The split is what lets a real node run the
I/O on a thread while its event loop keeps receiving and batching, and lets the simulator
deliver the completion later, or never (a crash with the flush in flight), while the
replica stays a deterministic state machine: the completion is one more input.

``run`` touches only the storage it is given and the flush's own copies of the header
sectors, so it is safe on another thread while the journal, on the loop, keeps staging
the next batch (the journal never builds a second flush before the first completes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vr.message import HEADER_SIZE, SECTOR_SIZE, Header
from vr.storage import Storage, StorageIOError

HEADERS_PER_SECTOR = SECTOR_SIZE // HEADER_SIZE


@dataclass(frozen=True, slots=True)
class SlotWrite:
    """One prepare-ring write and the 128-byte header that goes into the header ring after it."""

    slot: int
    offset: int
    # The whole entry, padded to sectors; None when the slot already holds exactly this entry
    # (verified): only its header is written, and the intact copy, possibly the last one
    # anywhere, is never put in flight where a torn write could destroy it.
    data: bytes | None
    header: bytes  # the redundant header written into the header ring once ``data`` is durable
    prepare: Header | None  # the staged prepare's header (None: a truncated slot being reserved)


@dataclass(frozen=True, slots=True)
class FlushGroup:
    """Writes made durable together: the entries, one sync, their header sectors, one sync.

    At most ``PREPARE_WRITES_IN_FLIGHT_MAX`` entries, so recovery's bound on how many slots
    a torn append can damage holds (vr/journal.py).
    """

    writes: tuple[SlotWrite, ...]


@dataclass(slots=True)
class GroupDone:
    written: list[SlotWrite] = field(default_factory=list)  # entry writes that did not fail (EIO)
    failed_sectors: set[int] = field(default_factory=set)  # header sectors whose write failed


@dataclass(slots=True)
class FlushDone:
    """What :meth:`JournalFlush.run` did: per group, what landed; how many syncs; failed writes."""

    groups: list[GroupDone] = field(default_factory=list)
    syncs: int = 0
    write_eio: int = 0
    io_done: int = 0  # writes and syncs issued (the simulator stops a flush part-way at a crash)


@dataclass(slots=True)
class JournalFlush:
    """A prepared group commit; see the module docstring."""

    groups: tuple[FlushGroup, ...]
    headers_offset: int  # where the header ring starts in the data file
    # sector index -> its bytes as on disk when the flush began; run() patches the copies.
    sectors: dict[int, bytearray]

    @property
    def io_count(self) -> int:
        """Writes and syncs a run with no failures issues (the simulator's crash points)."""
        total = 0
        for group in self.groups:
            touched = {write.slot // HEADERS_PER_SECTOR for write in group.writes}
            entries = sum(1 for write in group.writes if write.data is not None)
            total += entries + (1 if entries else 0) + len(touched) + 1
        return total

    def run(self, storage: Storage, *, io_max: int | None = None) -> FlushDone:
        """Do the writes and syncs in order; a failed sync raises (nothing unsynced is trusted).

        ``io_max`` stops after that many writes and syncs, leaving the rest undone (the
        simulator's process crash in the middle of a flush); a real node never passes it.
        """
        done = FlushDone()
        for group in self.groups:
            result = GroupDone()
            done.groups.append(result)
            wrote = False
            for write in group.writes:
                if write.data is None:
                    result.written.append(write)  # already on disk: only its header is written
                    continue
                if io_max is not None and done.io_done >= io_max:
                    return done
                done.io_done += 1
                try:
                    storage.write(write.offset, write.data)
                except StorageIOError:
                    done.write_eio += 1
                    continue
                result.written.append(write)
                wrote = True
            if not result.written:
                continue
            if wrote:
                if io_max is not None and done.io_done >= io_max:
                    return done
                done.io_done += 1
                storage.sync()
                done.syncs += 1
            touched: set[int] = set()
            for write in result.written:
                sector, index = divmod(write.slot, HEADERS_PER_SECTOR)
                self.sectors[sector][index * HEADER_SIZE : (index + 1) * HEADER_SIZE] = write.header
                touched.add(sector)
            for sector in sorted(touched):
                if io_max is not None and done.io_done >= io_max:
                    return done
                done.io_done += 1
                try:
                    storage.write(self.headers_offset + sector * SECTOR_SIZE, bytes(self.sectors[sector]))
                except StorageIOError:
                    done.write_eio += 1
                    result.failed_sectors.add(sector)
            if io_max is not None and done.io_done >= io_max:
                return done
            done.io_done += 1
            storage.sync()
            done.syncs += 1
        return done


__all__ = ["FlushDone", "FlushGroup", "GroupDone", "JournalFlush", "SlotWrite"]
