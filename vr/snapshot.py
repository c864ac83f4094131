"""Checkpoint snapshots of the state machine: two slots, written alternately, checksummed.

A checkpoint is the serialized state machine (and client table) after executing op
``op``; the superblock names the durable one with a :class:`SnapshotRef`. A new snapshot
always goes into the slot the durable checkpoint does *not* use, so a crash while writing
it (or before the superblock points at it) leaves the old checkpoint intact: there is never
a moment with no readable checkpoint. The caller passes the durable checkpoint explicitly
(``write(op, data, checkpoint=superblock.state.checkpoint)``) rather than the store
remembering it, because only the superblock knows which snapshot is durable.

Reads re-verify size and checksum; a mismatch or EIO returns ``None`` so the replica can
fall back to state transfer from a peer rather than load rotten state.
"""

from __future__ import annotations

from dataclasses import dataclass

from vr.layout import SNAPSHOT_SLOT_COUNT, Layout
from vr.message import SECTOR_SIZE, checksum
from vr.storage import Storage, StorageIOError, align_up


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Which snapshot: state after ``op``, ``size`` bytes with blake2b-128 ``checksum``, in ``slot``."""

    op: int
    checksum: bytes
    size: int
    slot: int

    def __post_init__(self) -> None:
        assert self.op >= 0, self.op
        assert len(self.checksum) == 16, self.checksum
        assert self.size >= 0, self.size
        assert 0 <= self.slot < SNAPSHOT_SLOT_COUNT, self.slot


class SnapshotStore:
    """Reads and writes the two snapshot slots of a data file."""

    def __init__(self, storage: Storage, layout: Layout) -> None:
        assert storage.size_bytes >= layout.size_bytes, (storage.size_bytes, layout.size_bytes)
        self.storage = storage
        self.layout = layout

    def write(self, op: int, data: bytes, *, checkpoint: SnapshotRef | None) -> SnapshotRef:
        """Write ``data`` (state after ``op``) into the slot ``checkpoint`` does not use; durable on return.

        ``checkpoint`` is the durable checkpoint (the superblock's), or None when formatting.
        """
        if len(data) > self.layout.snapshot_size_max:
            raise ValueError(
                f"snapshot of {len(data)} bytes exceeds the layout's snapshot_size_max "
                f"({self.layout.snapshot_size_max})"
            )
        slot = 0 if checkpoint is None else 1 - checkpoint.slot
        assert checkpoint is None or op >= checkpoint.op, (op, checkpoint)
        if data:
            padded = bytes(data) + bytes(align_up(len(data)) - len(data))
            self.storage.write(self.layout.snapshot_offset(slot), padded)
            self.storage.sync()
        return SnapshotRef(op=op, checksum=checksum(data), size=len(data), slot=slot)

    def read(self, ref: SnapshotRef) -> bytes | None:
        """The snapshot's bytes, or None if they fail their checksum or the device returns EIO."""
        if ref.size > self.layout.snapshot_size_max:
            return None
        if ref.size == 0:
            data = b""
        else:
            try:
                raw = self.storage.read(
                    self.layout.snapshot_offset(ref.slot), align_up(ref.size, SECTOR_SIZE)
                )
            except StorageIOError:
                return None
            data = raw[: ref.size]
        if checksum(data) != ref.checksum:
            return None
        return data


__all__ = ["SnapshotRef", "SnapshotStore"]
