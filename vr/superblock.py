"""The superblock: the replica's durable VSR state, in several hash-chained copies.

The view, the last normal view (``log_view``), the known commit, the checkpoint and the
view-change headers must survive a crash *and* a torn or rotten sector (docs/vr.md §2.4,
bug #18): a replica whose view regressed after a restart could vote twice in one view.
So the state is written in ``layout.superblock_copies`` (4) copies, each carrying a
``sequence`` that grows by one per update and the ``parent`` checksum of the previous
sequence, and each checksummed. The copy index is stored *outside* the checksum so a
misdirected read (copy 2's bytes returned for copy 1) is noticed.

Thresholds (for 4 copies): ``open`` needs 2 equal copies, ``update`` verifies 3. They sum
to copies + 1, so any state that an update reported durable is seen by every later open,
however the remaining copies were lost. Open never "takes the newest single copy": one
misdirected or stale sector could then hide the real state.

An update writes the copies one after another with a sync after each, so at most one
copy is in flight when the power goes: a torn update opens at either the old or the new
sequence, never at a fork. After an open, copies that do not hold the chosen state are
rewritten (repair), so a stale copy can never combine with a later torn update into a
quorum for an older state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from vr.layout import SUPERBLOCK_FIXED_SIZE, Layout
from vr.message import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    ZERO_CHECKSUM,
    Header,
    InvalidMessage,
    checksum,
    decode_header_unchecked,
)
from vr.snapshot import SnapshotRef
from vr.storage import Storage, StorageIOError

SUPERBLOCK_VERSION = 1

_PREFIX = struct.Struct("<16sH")  # checksum, copy index (both outside the checksum)
_FIELDS = struct.Struct("<HQ16sQBBHQQQQ16sQB")
# version, sequence, parent, cluster, replica, replica_count, view_headers_count,
# view, log_view, commit_max, checkpoint op, checkpoint checksum, checkpoint size, checkpoint slot
assert _PREFIX.size + _FIELDS.size <= SUPERBLOCK_FIXED_SIZE


class SuperBlockError(Exception):
    """The superblock cannot be opened or an update could not be verified.

    ``reason`` is one of ``not-found`` (no valid copy: never formatted, or wiped),
    ``quorum-lost`` (valid copies exist but no state has enough of them), ``fork`` (two
    different states with the same sequence), ``parent-not-connected`` (the previous
    sequence on disk is not the newest state's parent), ``not-monotonic`` (the newest
    state went backwards from its parent), ``verify-failed`` (an update did not read back).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"superblock {reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class VSRState:
    """What a replica must never forget across restarts."""

    cluster: int
    replica: int
    replica_count: int
    view: int
    log_view: int
    commit_max: int
    checkpoint: SnapshotRef
    view_headers: tuple[Header, ...] = field(default=())

    def __post_init__(self) -> None:
        assert 0 <= self.replica < self.replica_count <= 255, (self.replica, self.replica_count)
        assert 0 <= self.log_view <= self.view, (self.log_view, self.view)
        assert self.commit_max >= 0, self.commit_max


@dataclass(frozen=True, slots=True)
class _Copy:
    """One decoded, checksum-valid copy as found on disk."""

    checksum: bytes
    copy: int
    sequence: int
    parent: bytes
    state: VSRState


class SuperBlock:
    """Quorum-read, verify-written durable VSR state (see the module docstring)."""

    def __init__(self, storage: Storage, layout: Layout) -> None:
        assert storage.size_bytes >= layout.size_bytes, (storage.size_bytes, layout.size_bytes)
        self.storage = storage
        self.layout = layout
        self._working: _Copy | None = None
        self.repaired_copy_count = 0
        self.invalid_copy_count = 0
        self.write_error_count = 0

    @property
    def copies(self) -> int:
        return self.layout.superblock_copies

    @property
    def quorum_open(self) -> int:
        return self.copies // 2

    @property
    def quorum_verify(self) -> int:
        return self.copies // 2 + 1

    @property
    def state(self) -> VSRState:
        assert self._working is not None, "superblock not opened or formatted"
        return self._working.state

    @property
    def sequence(self) -> int:
        assert self._working is not None, "superblock not opened or formatted"
        return self._working.sequence

    def format(self, state: VSRState) -> None:
        """Write sequence 1 (parent zero) to every copy; durable and verified on return."""
        assert len(state.view_headers) <= self.layout.view_headers_max, len(state.view_headers)
        self._write_verified(sequence=1, parent=ZERO_CHECKSUM, state=state)

    def open(self) -> VSRState:
        """Read every copy and choose the state by quorum; repair stale copies; raises SuperBlockError."""
        found = self._read_copies()
        best = self._choose(found)
        self._working = best
        self._repair(found, best)
        return best.state

    def update(self, state: VSRState) -> None:
        """Persist ``state`` as sequence+1 chained to the current one; durable and verified on return."""
        assert self._working is not None, "superblock not opened or formatted"
        old = self._working.state
        assert state.cluster == old.cluster, (state.cluster, old.cluster)
        assert state.replica == old.replica, (state.replica, old.replica)
        assert state.replica_count == old.replica_count, (state.replica_count, old.replica_count)
        assert state.view >= old.view, f"view regressed {old.view} -> {state.view}"
        assert state.log_view >= old.log_view, f"log_view regressed {old.log_view} -> {state.log_view}"
        assert state.commit_max >= old.commit_max, (
            f"commit_max regressed {old.commit_max} -> {state.commit_max}"
        )
        assert state.checkpoint.op >= old.checkpoint.op, (
            f"checkpoint regressed {old.checkpoint} -> {state.checkpoint}"
        )
        assert len(state.view_headers) <= self.layout.view_headers_max, len(state.view_headers)
        self._write_verified(sequence=self._working.sequence + 1, parent=self._working.checksum, state=state)

    # Internals -------------------------------------------------------------------------------

    def _write_verified(self, *, sequence: int, parent: bytes, state: VSRState) -> None:
        body = _encode_body(self.layout, sequence=sequence, parent=parent, state=state)
        digest = checksum(body)
        for copy in range(self.copies):
            self._write_copy(copy, digest, body)
        found = self._read_copies()
        equal = sum(1 for c in found if c.checksum == digest)
        if equal < self.quorum_verify:
            raise SuperBlockError(
                "verify-failed",
                f"sequence {sequence}: only {equal} of {self.copies} copies read back equal, "
                f"{self.quorum_verify} required",
            )
        self._working = _Copy(checksum=digest, copy=0, sequence=sequence, parent=parent, state=state)

    def _read_copies(self) -> list[_Copy]:
        found: list[_Copy] = []
        for index in range(self.copies):
            try:
                raw = self.storage.read(
                    self.layout.superblock_copy_offset(index), self.layout.superblock_copy_size
                )
            except StorageIOError:
                self.invalid_copy_count += 1
                continue
            decoded = _decode_copy(raw)
            if decoded is None or decoded.copy != index:  # rotten, torn, never written, or misdirected
                self.invalid_copy_count += 1
                continue
            found.append(decoded)
        return found

    def _choose(self, found: list[_Copy]) -> _Copy:
        if not found:
            raise SuperBlockError(
                "not-found", f"none of the {self.copies} copies is valid (never formatted?)"
            )
        groups: dict[bytes, list[_Copy]] = {}
        for c in found:
            groups.setdefault(c.checksum, []).append(c)
        quorums = [g[0] for g in groups.values() if len({c.copy for c in g}) >= self.quorum_open]
        if not quorums:
            described = ", ".join(f"sequence {g[0].sequence} x{len(g)}" for g in groups.values())
            raise SuperBlockError(
                "quorum-lost", f"no state has {self.quorum_open} of {self.copies} copies ({described})"
            )
        best_sequence = max(q.sequence for q in quorums)
        best = [q for q in quorums if q.sequence == best_sequence]
        if len(best) > 1:
            raise SuperBlockError("fork", f"{len(best)} different states at sequence {best_sequence}")
        chosen = best[0]
        for g in groups.values():
            other = g[0]
            if other.sequence == chosen.sequence - 1 and other.checksum != chosen.parent:
                raise SuperBlockError(
                    "parent-not-connected",
                    f"sequence {other.sequence} on disk is not the parent of sequence {chosen.sequence}",
                )
            if other.checksum == chosen.parent and not _monotonic(other.state, chosen.state):
                raise SuperBlockError(
                    "not-monotonic", f"sequence {chosen.sequence} went backwards from its parent"
                )
        return chosen

    def _repair(self, found: list[_Copy], best: _Copy) -> None:
        holding = {c.copy for c in found if c.checksum == best.checksum}
        body = _encode_body(self.layout, sequence=best.sequence, parent=best.parent, state=best.state)
        assert checksum(body) == best.checksum
        for copy in range(self.copies):
            if copy not in holding and self._write_copy(copy, best.checksum, body):
                self.repaired_copy_count += 1

    def _write_copy(self, copy: int, digest: bytes, body: bytes) -> bool:
        """Write and sync one copy; a device error on it is counted, not fatal (the quorum decides)."""
        try:
            self.storage.write(self.layout.superblock_copy_offset(copy), _PREFIX.pack(digest, copy) + body)
        except StorageIOError:
            self.write_error_count += 1
            return False
        self.storage.sync()
        return True


def _monotonic(parent: VSRState, child: VSRState) -> bool:
    return (
        child.view >= parent.view
        and child.log_view >= parent.log_view
        and child.commit_max >= parent.commit_max
        and child.checkpoint.op >= parent.checkpoint.op
    )


def _encode_body(layout: Layout, *, sequence: int, parent: bytes, state: VSRState) -> bytes:
    """Everything after the (checksum, copy) prefix, padded to the copy size: what the checksum covers."""
    assert len(parent) == CHECKSUM_SIZE
    fields = _FIELDS.pack(
        SUPERBLOCK_VERSION,
        sequence,
        parent,
        state.cluster,
        state.replica,
        state.replica_count,
        len(state.view_headers),
        state.view,
        state.log_view,
        state.commit_max,
        state.checkpoint.op,
        state.checkpoint.checksum,
        state.checkpoint.size,
        state.checkpoint.slot,
    )
    head = fields + bytes(SUPERBLOCK_FIXED_SIZE - _PREFIX.size - len(fields))
    headers = b"".join(h.encode_raw() for h in state.view_headers)
    body = head + headers
    return body + bytes(layout.superblock_copy_size - _PREFIX.size - len(body))


def _decode_copy(raw: bytes) -> _Copy | None:
    digest, copy = _PREFIX.unpack_from(raw)
    body = raw[_PREFIX.size :]
    if checksum(body) != digest:
        return None
    (
        version,
        sequence,
        parent,
        cluster,
        replica,
        replica_count,
        view_headers_count,
        view,
        log_view,
        commit_max,
        checkpoint_op,
        checkpoint_checksum,
        checkpoint_size,
        checkpoint_slot,
    ) = _FIELDS.unpack_from(body)
    if version != SUPERBLOCK_VERSION:
        return None
    start = SUPERBLOCK_FIXED_SIZE - _PREFIX.size
    if start + view_headers_count * HEADER_SIZE > len(body):
        return None
    try:
        headers = tuple(
            decode_header_unchecked(body[start + i * HEADER_SIZE : start + (i + 1) * HEADER_SIZE])
            for i in range(view_headers_count)
        )
        state = VSRState(
            cluster=cluster,
            replica=replica,
            replica_count=replica_count,
            view=view,
            log_view=log_view,
            commit_max=commit_max,
            checkpoint=SnapshotRef(
                op=checkpoint_op, checksum=checkpoint_checksum, size=checkpoint_size, slot=checkpoint_slot
            ),
            view_headers=headers,
        )
    except (AssertionError, InvalidMessage, ValueError):  # checksum-valid but unparseable: not ours
        return None
    return _Copy(checksum=digest, copy=copy, sequence=sequence, parent=parent, state=state)


__all__ = ["SUPERBLOCK_VERSION", "SuperBlock", "SuperBlockError", "VSRState"]
