"""The write-ahead journal: two rings (prepares, redundant headers) and crash recovery.

Op ``op`` lives in slot ``op % slot_count`` of both rings (vr/layout.py). The prepare
ring holds the whole prepare message; the header ring holds a second copy of its header,
written only after the prepare is durable (docs/vr.md §2.2). Keeping the entry's identity
(op, checksum) in two places is what lets recovery tell the three things a failed
checksum can mean apart (docs/vr.md §5):

- a **torn append** (the power went while the newest prepares were in flight: nothing
  there was ever acknowledged, safe to cut);
- **bit rot or a lost write** of an entry that may be committed (must be kept as
  *faulty*, never reported as absent, and repaired from peers by (op, checksum));
- an **interrupted header write** (the prepare is intact: fix the header locally).

The per-slot decision is a table, ``RECOVERY_CASES``: rows with a pattern over the
boolean facts ``classify`` sees, a decision for a multi-replica cluster and for a single
replica, and why. ``tests/vr/test_recovery_cases.py`` checks that every combination of
the facts matches exactly one row. The torn-append refinement (``_torn_slots``) then
cuts only what is provably a torn tail above the head (and discards above-head slots
that provably never held their window's op), and only when *nothing* above the head
looks like anything else. The planted bug ``truncate-on-checksum-mismatch`` (docs/vr.md
bug #9) is the one guarded branch that does otherwise.

The WAL may hold ops up to ``op_checkpoint + slot_count``; writing beyond that would
overwrite an op the snapshot does not hold yet, so it is an assertion, and the replica
advances the window with ``set_op_checkpoint`` after each durable checkpoint.

Writes are staged (``write_prepare``) and made durable together by ``flush`` (group
commit: all staged prepares, one sync, the affected header sectors merged, one sync), so
a batch of N ops costs two fsyncs, not 2N. Nothing may be acknowledged before the
``flush`` that returns its header. The second sync is what keeps a lost or rotten
acknowledged prepare from looking like a torn append, so it cannot be merged into the
first or deferred to the next flush (docs/vr.md §2.2).

Runtime reads (``read_prepare``) re-verify everything; a failure marks the slot faulty and
dirty so the replica repairs it instead of serving or executing unverified bytes.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from vr.journal_flush import FlushDone, FlushGroup, JournalFlush, SlotWrite
from vr.layout import Layout
from vr.message import (
    HEADER_SIZE,
    SECTOR_SIZE,
    Command,
    Header,
    InvalidMessage,
    Message,
    checksum,
    decode_header,
    root_prepare,
)
from vr.storage import Storage, StorageIOError, align_up

logger = logging.getLogger(__name__)

# At most this many prepares are in flight (written, not yet synced) at any moment:
# flush() syncs after every group of this size. Recovery may cut at most this many
# slots as a torn append; more damage than this above the head cannot be a torn append.
PREPARE_WRITES_IN_FLIGHT_MAX = 64

BUG_TRUNCATE_ON_CHECKSUM_MISMATCH = "truncate-on-checksum-mismatch"


class JournalError(Exception):
    """The journal cannot be recovered. ``reason``: ``wal-invalid`` or ``solo-faulty``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"journal {reason}: {detail}")
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# The recovery decision table (docs/vr.md §2.3)
# ---------------------------------------------------------------------------------------------


class Decision(enum.Enum):
    """What recovery does with one slot."""

    EQL = "eql"  # header and prepare agree: clean
    NIL = "nil"  # never used: reserved in both rings
    FIX = "fix"  # rewrite the redundant header from the intact local prepare
    VSR = "vsr"  # faulty: keep the slot, never nack it, repair it from peers by (op, checksum)
    CUT = "cut"  # discard the slot (outside the window the checkpoint allows)
    CUT_TORN = "cut_torn"  # discard as a provably torn append (only from the torn-append refinement)


COLUMNS = (
    "h_ok",  # the redundant header is valid: checksum, cluster, slot, command prepare or reserved
    "h_reserved",  # ... and it is the slot's canonical reserved header
    "p_ok",  # the prepare is valid: header and body checksums, cluster, slot, size, zero padding
    "p_reserved",  # ... and it is the slot's canonical reserved prepare
    "beyond",  # a non-reserved valid H or P has an op beyond op_prepare_max (checkpoint + slot_count)
    "p_op_max",  # P's op is the highest op seen in either ring (within the window)
    "same_checksum",  # both non-reserved and H.checksum == P.checksum
    "h_op_lt",  # both non-reserved and H.op < P.op
    "h_op_gt",  # both non-reserved and H.op > P.op
    "same_view",  # both non-reserved and H.view == P.view
)

# Pattern characters: "1" must be true, "0" must be false, "-" either; "t"/"f" mean the
# value is implied by the other columns (matching treats them like "-", and classify
# asserts them): an input that violates one is a bug in how the facts were computed.
_PATTERN_CHARS = frozenset("10-tf")


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the decision table."""

    label: str
    decision_multiple: Decision  # replica_count > 1
    decision_solo: Decision  # replica_count == 1: nobody to repair from
    pattern: str  # one character per COLUMNS entry (spaces ignored)
    why: str

    def __post_init__(self) -> None:
        assert len(self.cells) == len(COLUMNS), (self.label, self.pattern)
        assert set(self.cells) <= _PATTERN_CHARS, (self.label, self.pattern)

    @property
    def cells(self) -> str:
        return self.pattern.replace(" ", "")

    def matches(self, values: tuple[bool, ...]) -> bool:
        return all(
            cell in "-tf" or (cell == "1") == value for cell, value in zip(self.cells, values, strict=True)
        )

    def implied_violations(self, values: tuple[bool, ...]) -> list[str]:
        """Columns whose value contradicts what this row says is implied."""
        return [
            name
            for name, cell, value in zip(COLUMNS, self.cells, values, strict=True)
            if (cell == "t" and not value) or (cell == "f" and value)
        ]

    def decision(self, *, solo: bool) -> Decision:
        return self.decision_solo if solo else self.decision_multiple


_E, _N, _F, _V, _C = Decision.EQL, Decision.NIL, Decision.FIX, Decision.VSR, Decision.CUT

#                         h_ok h_res p_ok p_res beyond p_max same lt gt view
RECOVERY_CASES: tuple[Case, ...] = (
    Case("A", _V, _V, "0 f 0 f 0 f f f f f",
         "Both copies are lost (rot, EIO, or a torn header sector over a lost prepare). We cannot "
         "even tell which op lived here, so the slot is faulty: never nacked, repaired from peers."),
    Case("B", _V, _V, "1 1 0 f 0 f f f f f",
         "Header reserved, prepare unreadable: either a torn append of a new op (the header is "
         "written only after the prepare) or rot of a prepare whose header write was lost. Faulty, "
         "unless the torn-append refinement proves it the torn tail."),
    Case("C", _V, _V, "1 0 0 f 0 f f f f f",
         "A valid header for some op, prepare unreadable: rot of that op's prepare, or a torn append "
         "over an older wrap. Never truncate on a checksum mismatch (docs/vr.md bug #9): faulty, unless "
         "the torn-append refinement proves it the torn tail."),
    Case("D", _V, _F, "0 f 1 1 0 f f f f f",
         "Header unreadable, prepare reserved: a torn header-sector write, or a new prepare write that "
         "was lost before its header. With peers, ask them; alone, the reserved prepare is all we have."),
    Case("E", _V, _F, "0 f 1 0 0 0 f f f f",
         "Header unreadable, valid prepare that is not the newest op: the header cannot confirm this is "
         "the slot's newest version (a newer prepare write may have been lost). With peers, repair by "
         "(op, checksum), serving the intact copy meanwhile; alone, trust the prepare."),
    Case("F", _F, _F, "0 f 1 0 0 1 f f f f",
         "Header unreadable, valid prepare holding the newest op seen: we crashed while writing its "
         "header (headers follow prepares). The prepare is intact: rewrite the header from it."),
    Case("G", _F, _F, "1 1 1 0 0 - f f f f",
         "Header reserved, valid prepare: the prepare was written and the crash came before its "
         "header. Rewrite the header from the prepare."),
    Case("H", _C, _C, "- - - - 1 - - - - -",
         "A header or prepare claims an op beyond op_prepare_max: the checkpoint does not allow it in "
         "the WAL, so it cannot be an entry we need (it predates a state transfer). Discard the slot."),
    Case("K", _V, _V, "1 0 1 1 0 f f f f f",
         "Valid header for an op, reserved prepare: the prepare write was lost or misdirected after "
         "the header said it was there. Faulty: the op may be committed."),
    Case("L", _N, _N, "1 1 1 1 0 f f f f f",
         "Reserved in both rings: the slot was never used (or was truncated durably)."),
    Case("M", _F, _F, "1 0 1 0 0 - 0 1 f -",
         "Header of an older op, prepare of a newer one: the log wrapped and the crash came after the "
         "prepare write but before its header write. Rewrite the header from the prepare."),
    Case("N", _V, _V, "1 0 1 0 0 - 0 0 1 -",
         "Header of a newer op than the prepare: the newer prepare write was lost (or misdirected) "
         "after its header was written. The newer op may be committed: faulty, repair it."),
    Case("O", _V, _V, "1 0 1 0 0 - 0 0 0 -",
         "Same op, two different versions (different views, or impossible in one view): we cannot "
         "tell which one is current, so repair from peers by the cluster's view of the log."),
    Case("P", _E, _E, "1 0 1 0 0 - 1 f f t",
         "Header and prepare agree (same checksum): the normal case, clean."),
)  # fmt: skip

_CASES_BY_LABEL = {case.label: case for case in RECOVERY_CASES}
assert len(_CASES_BY_LABEL) == len(RECOVERY_CASES)


@dataclass(frozen=True, slots=True)
class SlotFacts:
    """The boolean inputs of :func:`classify` for one slot (see ``COLUMNS``)."""

    h_ok: bool
    h_reserved: bool
    p_ok: bool
    p_reserved: bool
    beyond: bool
    p_op_max: bool
    same_checksum: bool
    h_op_lt: bool
    h_op_gt: bool
    same_view: bool

    def values(self) -> tuple[bool, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)

    @staticmethod
    def of(header: Header | None, prepare: Header | None, *, op_max: int, op_prepare_max: int) -> SlotFacts:
        """Facts about a slot whose valid redundant header is ``header`` and valid prepare ``prepare``."""
        h_usable = header is not None and header.command == Command.PREPARE
        p_usable = prepare is not None and prepare.command == Command.PREPARE
        both = h_usable and p_usable
        assert header is None or header.command in (Command.PREPARE, Command.RESERVED)
        assert prepare is None or prepare.command in (Command.PREPARE, Command.RESERVED)
        return SlotFacts(
            h_ok=header is not None,
            h_reserved=header is not None and not h_usable,
            p_ok=prepare is not None,
            p_reserved=prepare is not None and not p_usable,
            beyond=(h_usable and header.op > op_prepare_max)  # type: ignore[union-attr]
            or (p_usable and prepare.op > op_prepare_max),  # type: ignore[union-attr]
            p_op_max=p_usable and prepare.op == op_max,  # type: ignore[union-attr]
            same_checksum=both and header.checksum == prepare.checksum,  # type: ignore[union-attr]
            h_op_lt=both and header.op < prepare.op,  # type: ignore[union-attr]
            h_op_gt=both and header.op > prepare.op,  # type: ignore[union-attr]
            same_view=both and header.view == prepare.view,  # type: ignore[union-attr]
        )


def matching_cases(values: tuple[bool, ...]) -> list[Case]:
    """Every row whose pattern matches ``values`` (exactly one, by construction and test)."""
    assert len(values) == len(COLUMNS), values
    return [case for case in RECOVERY_CASES if case.matches(values)]


@functools.cache
def _case_for(values: tuple[bool, ...]) -> Case:
    cases = matching_cases(values)
    assert len(cases) == 1, f"{len(cases)} recovery cases match {dict(zip(COLUMNS, values, strict=True))}"
    return cases[0]


def classify(facts: SlotFacts) -> Case:
    """The one row of RECOVERY_CASES for these facts; a pure function.

    Asserts that the facts are self-consistent (the row's implied columns hold): an
    inconsistent input means the caller computed the facts wrongly, not bad disk bytes.
    """
    values = facts.values()
    case = _case_for(values)
    violations = case.implied_violations(values)
    assert not violations, f"case {case.label}: inconsistent facts {violations} in {facts}"
    return case


# ---------------------------------------------------------------------------------------------
# The journal
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRecovery:
    """What ``Journal.recover`` found and did (for logs, events and the node's status)."""

    cases: dict[str, int]  # RECOVERY_CASES label -> slots
    decisions: dict[str, int]  # Decision value -> slots (after the torn-append refinement)
    op_max: int  # highest op the journal holds a header for after recovery
    op_checkpoint: int
    op_prepare_max: int
    faulty_slots: tuple[int, ...]
    torn_ops: tuple[int, ...]  # ops cut as provably torn appends
    fixed_slots: tuple[int, ...]
    cut_slots: tuple[int, ...]
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _SlotRead:
    """What recovery read from one slot: valid header H and valid prepare P (or None)."""

    slot: int
    header: Header | None
    prepare: Header | None


class Journal:
    """The WAL of one replica: in-memory belief per slot plus the two on-disk rings."""

    def __init__(
        self,
        storage: Storage,
        layout: Layout,
        *,
        cluster: int,
        replica: int,
        bugs: frozenset[str] = frozenset(),
    ) -> None:
        assert storage.size_bytes >= layout.size_bytes, (storage.size_bytes, layout.size_bytes)
        self.storage = storage
        self.layout = layout
        self.cluster = cluster
        self.replica = replica
        self.bugs = bugs
        n = layout.slot_count
        self._headers: list[Header | None] = [None] * n  # belief: the prepare header each slot holds
        self._dirty: set[int] = set()  # belief not (yet) durable in both rings
        self._faulty: set[int] = set()  # we held something here and lost it: never nack; faulty => dirty
        self._inhabited: dict[int, bytes] = {}  # slot -> checksum of the valid prepare physically present
        self._mirror = bytearray(layout.wal_headers_size)  # the header ring as it is (to be) on disk
        self._staged: dict[int, Message] = {}  # slot -> prepare to write at the next flush
        self._staged_reserved: set[int] = set()  # slots truncated in memory, to reserve on disk
        self._in_flight: JournalFlush | None = None  # the group commit begun and not yet completed
        # Slots whose prepare is already intact on disk and need only their redundant header
        # (write_prepare of a copy the slot holds): rewriting the prepare would put that copy,
        # maybe the cluster's last, in flight where a power cut can tear it.
        self._staged_headers: set[int] = set()
        self._reserved_headers = [Header.reserved(cluster, slot) for slot in range(n)]
        self.counters: dict[str, int] = {}
        self.sync_count = 0
        self.recovered = False
        self._op_max = 0  # cache of max(h.op for h in _headers): the replica asks often
        self.op_checkpoint = (
            0  # ops <= this are in the snapshot; the WAL may hold up to op_checkpoint + slot_count
        )

    # Queries ---------------------------------------------------------------------------------

    @property
    def slot_count(self) -> int:
        return self.layout.slot_count

    def slot_for_op(self, op: int) -> int:
        return self.layout.slot_for_op(op)

    def header_for_op(self, op: int) -> Header | None:
        """The header we believe slot(op) holds, if it is for exactly ``op`` (dirty or not)."""
        header = self._headers[op % self.layout.slot_count]
        if header is not None and header.op == op:
            return header
        return None

    def has_prepare(self, header: Header) -> bool:
        """True only if we durably hold this exact version (op and checksum), clean and not faulty."""
        slot = header.op % self.layout.slot_count
        ours = self._headers[slot]
        return (
            ours is not None
            and ours.op == header.op
            and ours.checksum == header.checksum
            and slot not in self._dirty
            and slot not in self._faulty
        )

    def holds_intact(self, op: int, checksum_expected: bytes) -> bool:
        """True if the slot physically holds this verified prepare, whatever we believe of it.

        A slot can be faulty (its header torn by a neighbour's header-sector write) while its
        prepare is intact: that copy may be the cluster's last, so it must still be served.
        """
        return self._inhabited.get(op % self.layout.slot_count) == checksum_expected

    def is_dirty(self, op: int) -> bool:
        return op % self.layout.slot_count in self._dirty

    def is_faulty(self, op: int) -> bool:
        """True if slot(op) lost something we once held: the replica must never nack this op."""
        return op % self.layout.slot_count in self._faulty

    def faulty_ops(self) -> list[int]:
        """Ops of faulty slots whose header we know (repair targets), ascending."""
        return sorted(h.op for slot in self._faulty if (h := self._headers[slot]) is not None)

    def faulty_slots(self) -> list[int]:
        return sorted(self._faulty)

    def op_max(self) -> int:
        """Highest op we hold a header for (the journal's head; 0 for an empty journal)."""
        return self._op_max

    @property
    def op_prepare_max(self) -> int:
        """The highest op the WAL may hold: one more would overwrite an op not yet in the checkpoint."""
        return self.op_checkpoint + self.layout.slot_count

    def set_op_checkpoint(self, op: int) -> None:
        """Record that ops <= ``op`` are in the durable snapshot (after the superblock update)."""
        assert op >= self.op_checkpoint, f"checkpoint regressed {self.op_checkpoint} -> {op}"
        self.op_checkpoint = op

    def headers(self) -> list[Header]:
        """Every header we believe in, ascending by op (for the replica's start-up and view change)."""
        return sorted((h for h in self._headers if h is not None), key=lambda h: h.op)

    # Format ----------------------------------------------------------------------------------

    def format(self) -> None:
        """Write reserved entries everywhere and the root prepare at op 0; durable on return."""
        root = root_prepare(self.cluster)
        for slot in range(self.layout.slot_count):
            entry = root.encode() if slot == 0 else self._reserved_headers[slot].encode()
            self.storage.write(self.layout.prepare_offset(slot), _pad(entry))
        self._sync()
        for slot in range(self.layout.slot_count):
            header = root.header if slot == 0 else self._reserved_headers[slot]
            self._mirror[slot * HEADER_SIZE : (slot + 1) * HEADER_SIZE] = header.encode()
        self.storage.write(self.layout.wal_headers_offset, bytes(self._mirror))
        self._sync()
        self._headers = [None] * self.layout.slot_count
        self._headers[0] = root.header
        self._op_max = 0
        self.op_checkpoint = 0
        self._dirty.clear()
        self._faulty.clear()
        self._inhabited = {0: root.header.checksum}
        self._staged.clear()
        self._staged_reserved.clear()
        self._staged_headers.clear()
        self.recovered = True

    # Writes ----------------------------------------------------------------------------------

    def write_prepare(self, message: Message) -> None:
        """Stage ``message`` for its slot; it becomes durable (and ackable) only after ``flush``."""
        header = message.header
        assert header.command == Command.PREPARE, header.short()
        assert header.cluster == self.cluster, header.short()
        assert header.size == HEADER_SIZE + len(message.body), header.short()
        assert header.size <= self.layout.prepare_size_max, header.size
        assert header.valid_checksum(), header.short()
        assert header.op <= self.op_prepare_max, (
            f"op {header.op} would overwrite an op not yet checkpointed "
            f"(op_checkpoint={self.op_checkpoint}, slot_count={self.layout.slot_count})"
        )
        slot = header.op % self.layout.slot_count
        self._set_header(slot, header)
        self._dirty.add(slot)
        self._staged_reserved.discard(slot)
        if self._holds_verbatim(slot, header.checksum):
            # The slot already holds this very prepare, verified (a faulty slot whose header was
            # torn, repaired from our own copy): write only the header. Rewriting the prepare would
            # make a durable copy an in-flight write, which a power cut may tear (seed 283 under
            # doubled storage stress lost committed op 26's last copy that way).
            self._staged.pop(slot, None)
            self._staged_headers.add(slot)
            return
        self._staged_headers.discard(slot)
        self._staged[slot] = message

    def set_header_as_dirty(self, header: Header) -> None:
        """Believe ``header`` for its slot (learned from a peer); its prepare is still needed."""
        assert header.command == Command.PREPARE, header.short()
        assert header.cluster == self.cluster, header.short()
        assert header.op <= self.op_prepare_max, (header.op, self.op_checkpoint)
        slot = header.op % self.layout.slot_count
        staged = self._staged.get(slot)
        if staged is not None and staged.header.checksum != header.checksum:
            del self._staged[slot]
        self._set_header(slot, header)
        self._dirty.add(slot)

    def _holds_verbatim(self, slot: int, checksum_expected: bytes) -> bool:
        """True if ``slot`` physically holds the verified prepare ``checksum_expected`` already."""
        return self._inhabited.get(slot) == checksum_expected

    def remove_entries_from(self, op: int) -> None:
        """Truncate ops >= ``op`` in memory; the next ``flush`` reserves their slots durably."""
        assert op > 0, "the root op is never truncated"
        for slot, header in enumerate(self._headers):
            if header is None or header.op < op:
                continue
            self._headers[slot] = None
            self._dirty.discard(slot)
            self._faulty.discard(slot)
            self._staged.pop(slot, None)
            self._staged_headers.discard(slot)
            self._staged_reserved.add(slot)
        self._op_max = _max_op(self._headers)

    def flush(self) -> list[Header]:
        """Group commit, here and now: ``begin_flush``, its I/O, ``complete_flush``.

        A prepare the slot already holds intact gets only its header written (see
        ``write_prepare``). Returns the headers that became durable and clean, ascending by
        op. A staged prepare whose write fails (EIO) stays staged and dirty for the next
        flush; a failed sync raises (after fsync fails nothing unsynced can be trusted:
        restart from disk).
        """
        flush = self.begin_flush()
        if flush is None:
            return []
        return self.complete_flush(flush, flush.run(self.storage))

    def begin_flush(self) -> JournalFlush | None:
        """Freeze what is staged into a group commit to run elsewhere (None: nothing to write).

        Truncated slots are reserved first (reserved prepare, sync, reserved header, sync: a
        crash between leaves case K, faulty, never a resurrected truncated op); then the
        headers of slots whose prepare is intact on disk (header sectors, sync: the prepare
        is never in flight, so no crash can tear what may be the last copy); then the staged
        prepares in groups of ``PREPARE_WRITES_IN_FLIGHT_MAX`` (prepares, sync, their header
        sectors merged, sync). Staging goes on meanwhile; it waits for the next flush, which
        begins only after this one completes.
        """
        assert self._in_flight is None, "a journal flush is already in flight"
        groups: list[FlushGroup] = []
        if self._staged_reserved:
            groups.append(
                FlushGroup(
                    tuple(
                        SlotWrite(
                            slot,
                            self.layout.prepare_offset(slot),
                            _pad(self._reserved_headers[slot].encode()),
                            self._reserved_headers[slot].encode(),
                            None,
                        )
                        for slot in sorted(self._staged_reserved)
                    )
                )
            )
        if self._staged_headers:
            header_only = []
            for slot in sorted(self._staged_headers):
                belief = self._headers[slot]
                if belief is not None and self._inhabited.get(slot) == belief.checksum:
                    header_only.append(
                        SlotWrite(slot, self.layout.prepare_offset(slot), None, belief.encode(), belief)
                    )
            self._staged_headers.clear()
            if header_only:
                groups.append(FlushGroup(tuple(header_only)))
        staged = sorted(self._staged.items(), key=lambda item: item[1].header.op)
        for start in range(0, len(staged), PREPARE_WRITES_IN_FLIGHT_MAX):
            groups.append(
                FlushGroup(
                    tuple(
                        SlotWrite(
                            slot,
                            self.layout.prepare_offset(slot),
                            _pad(message.encode()),
                            message.header.encode(),
                            message.header,
                        )
                        for slot, message in staged[start : start + PREPARE_WRITES_IN_FLIGHT_MAX]
                    )
                )
            )
        if not groups:
            return None
        sectors = {
            self.layout.header_sector_for_slot(write.slot) for group in groups for write in group.writes
        }
        flush = JournalFlush(
            groups=tuple(groups),
            headers_offset=self.layout.wal_headers_offset,
            sectors={
                sector: bytearray(self._mirror[sector * SECTOR_SIZE : (sector + 1) * SECTOR_SIZE])
                for sector in sectors
            },
        )
        self._in_flight = flush
        return flush

    def complete_flush(self, flush: JournalFlush, done: FlushDone) -> list[Header]:
        """Take in what ``flush`` made durable; returns the headers now durable and clean, by op.

        Beliefs may have moved while the flush ran (a newer version staged for a slot, a slot
        truncated): a written entry counts as clean only if it is still what the slot should
        hold, and stays staged only if something else was staged for the slot meanwhile.
        """
        assert self._in_flight is flush, "completing a journal flush that is not in flight"
        self._in_flight = None
        self.sync_count += done.syncs
        if done.write_eio:
            self._count("write_eio", done.write_eio)
        durable: list[Header] = []
        for group, result in zip(flush.groups, done.groups, strict=False):
            written = {id(write) for write in result.written}
            for write in group.writes:
                if id(write) not in written and write.prepare is not None:
                    logger.warning(
                        "replica=%d op=%d prepare write failed (EIO)", self.replica, write.prepare.op
                    )
            for write in result.written:
                slot = write.slot
                self._mirror[slot * HEADER_SIZE : (slot + 1) * HEADER_SIZE] = write.header
                landed = self.layout.header_sector_for_slot(slot) not in result.failed_sectors
                prepare = write.prepare
                if prepare is None:  # a truncated slot, now reserved
                    self._inhabited.pop(slot, None)
                    if landed:
                        self._staged_reserved.discard(slot)
                    continue
                if write.data is not None:
                    self._inhabited[slot] = prepare.checksum
                elif not landed:
                    self._staged_headers.add(slot)  # the header alone: retried next flush
                    continue
                if not landed:
                    continue  # prepare durable but its header is not: stays staged, retried next flush
                staged = self._staged.get(slot)
                if staged is not None and staged.header.checksum == prepare.checksum:
                    del self._staged[slot]
                belief = self._headers[slot]
                if (
                    belief is not None
                    and belief.checksum == prepare.checksum
                    and self._inhabited.get(slot) == prepare.checksum
                ):
                    self._dirty.discard(slot)
                    self._faulty.discard(slot)
                    if write.data is None:
                        self._count("header_only_fix")
                    durable.append(prepare)
        return sorted(durable, key=lambda h: h.op)

    @property
    def flush_in_flight(self) -> bool:
        return self._in_flight is not None

    def _write_header_sectors(self, slots: Iterable[int]) -> set[int]:
        """Write the header-ring sectors holding ``slots`` from the mirror; returns sectors that failed."""
        failed: set[int] = set()
        for sector in sorted({self.layout.header_sector_for_slot(slot) for slot in slots}):
            start = sector * SECTOR_SIZE
            try:
                self.storage.write(
                    self.layout.header_sector_offset(sector), bytes(self._mirror[start : start + SECTOR_SIZE])
                )
            except StorageIOError:
                self._count("write_eio")
                failed.add(sector)
        return failed

    # Reads -----------------------------------------------------------------------------------

    def read_prepare(self, op: int, checksum_expected: bytes) -> Message | None:
        """The prepare (op, checksum) if we hold it and it verifies, else None.

        Serves a staged (not yet durable) prepare from memory. From disk, re-verifies the
        header checksum, cluster, op, expected checksum, body checksum and zero padding; if
        the slot was supposed to hold it, any mismatch or EIO marks the slot faulty and dirty
        (so it is repaired, never nacked) and is counted.
        """
        slot = op % self.layout.slot_count
        staged = self._staged.get(slot)
        if staged is not None and staged.header.op == op and staged.header.checksum == checksum_expected:
            return staged
        belief = self._headers[slot]
        # "Ours" means the disk is supposed to hold it: a belief that is only dirty (a header learned
        # from a peer, its prepare never written) proves nothing about the disk, so a miss there is
        # not a fault. A faulty slot is dirty too, and stays faulty.
        ours = (
            belief is not None
            and belief.op == op
            and belief.checksum == checksum_expected
            and (slot not in self._dirty or slot in self._faulty)
        )
        present = self._inhabited.get(slot) == checksum_expected
        if not ours and not present:
            return None
        try:
            message, fault = self._read_slot_message(slot)
        except StorageIOError:
            self._read_fault(slot, op, "read_eio", ours=ours)
            return None
        if message is not None and (message.header.op != op or message.header.checksum != checksum_expected):
            message, fault = None, "read_wrong_version"  # the slot durably holds another op or version
        if message is None:
            self._read_fault(slot, op, fault, ours=ours)
            return None
        return message

    def _read_fault(self, slot: int, op: int, kind: str, *, ours: bool) -> None:
        self._count(kind)
        self._inhabited.pop(slot, None)
        if ours:
            self._faulty.add(slot)
            self._dirty.add(slot)
            logger.warning(
                "replica=%d op=%d slot=%d prepare read fault=%s: marked faulty", self.replica, op, slot, kind
            )

    def _read_slot_message(self, slot: int) -> tuple[Message | None, str]:
        """The valid prepare message physically in ``slot``, else None and why; EIO raises."""
        first = self.storage.read(self.layout.prepare_offset(slot), SECTOR_SIZE)
        header = self._valid_prepare_header(slot, first)
        if header is None:
            return None, self._invalid_reason(slot, first)
        if header.command != Command.PREPARE:
            return None, "read_reserved"
        message = self._read_body(slot, header, first)
        return message, "read_corrupt"

    def _invalid_reason(self, slot: int, first_sector: bytes) -> str:
        """Why a prepare slot failed validation: a sealed header for another slot is a misdirect."""
        try:
            header = decode_header(first_sector[:HEADER_SIZE], cluster=self.cluster)
        except InvalidMessage:
            return "read_corrupt"
        if header.op % self.layout.slot_count != slot:
            return "read_misdirected"
        return "read_corrupt"

    def _read_body(self, slot: int, header: Header, first: bytes) -> Message | None:
        padded_size = align_up(header.size)
        raw = first
        if padded_size > SECTOR_SIZE:
            raw = first + self.storage.read(
                self.layout.prepare_offset(slot) + SECTOR_SIZE, padded_size - SECTOR_SIZE
            )
        body = raw[HEADER_SIZE : header.size]
        if checksum(body) != header.checksum_body:
            return None
        if any(raw[header.size : padded_size]):
            return None  # padding must read back zero: anything else is a torn or misdirected write
        return Message(header, body)

    # Validation ------------------------------------------------------------------------------

    def _valid_redundant_header(self, slot: int, raw: bytes) -> Header | None:
        """H: valid checksum, cluster, slot; a prepare header of sane size, or the canonical reserved one."""
        try:
            header = decode_header(raw, cluster=self.cluster)
        except InvalidMessage:
            return None
        if header.command == Command.RESERVED:
            return header if header == self._reserved_headers[slot] else None
        if header.command != Command.PREPARE:
            return None
        if header.op % self.layout.slot_count != slot or header.size > self.layout.prepare_size_max:
            return None
        return header

    def _valid_prepare_header(self, slot: int, first_sector: bytes) -> Header | None:
        """The header at the start of a prepare slot, if valid for this slot (reserved: whole sector zero-padded)."""
        header = self._valid_redundant_header(slot, first_sector[:HEADER_SIZE])
        if header is None:
            return None
        if header.command == Command.RESERVED and any(first_sector[HEADER_SIZE:]):
            return None
        return header

    # Recovery --------------------------------------------------------------------------------

    def recover(self, *, op_checkpoint: int, solo: bool) -> JournalRecovery:
        """Read both rings, classify every slot, cut only provable torn appends, fix what is local.

        Fixes and cuts are written durably before returning. Raises JournalError if every
        slot is faulty (``wal-invalid``), or if ``solo`` and any slot stays faulty
        (``solo-faulty``: a single replica has nobody to repair from).
        """
        n = self.layout.slot_count
        assert op_checkpoint >= 0, op_checkpoint
        self.op_checkpoint = op_checkpoint
        op_prepare_max = self.op_prepare_max
        reads = self._read_rings()
        op_max = _op_max_seen(reads, op_prepare_max)
        cases: dict[str, int] = {}
        decisions: dict[int, Decision] = {}
        for read in reads:
            facts = SlotFacts.of(read.header, read.prepare, op_max=op_max, op_prepare_max=op_prepare_max)
            case = classify(facts)
            cases[case.label] = cases.get(case.label, 0) + 1
            decisions[read.slot] = case.decision(solo=solo)
        torn, stale = self._torn_slots(
            reads, decisions, op_max=op_max, op_checkpoint=op_checkpoint, op_prepare_max=op_prepare_max
        )
        for slot in torn:
            decisions[slot] = Decision.CUT_TORN
        for slot in stale:
            decisions[slot] = Decision.CUT
            self._count("stale_cut")
        if BUG_TRUNCATE_ON_CHECKSUM_MISMATCH in self.bugs:
            self._bug_truncate_at_first_mismatch(reads, decisions, op_max=op_max)
        torn_ops = sorted(_op_for_slot_after(slot, max(op_max, op_checkpoint), n) for slot in torn)
        self._apply(reads, decisions)
        faulty = sorted(self._faulty)
        if len(faulty) == n:
            raise JournalError("wal-invalid", f"all {n} WAL slots are faulty")
        if solo and faulty:
            raise JournalError(
                "solo-faulty", f"{len(faulty)} faulty WAL slot(s) {faulty[:8]} and no peer to repair from"
            )
        decision_counts: dict[str, int] = {}
        for decision in decisions.values():
            decision_counts[decision.value] = decision_counts.get(decision.value, 0) + 1
        self.recovered = True
        result = JournalRecovery(
            cases=cases,
            decisions=decision_counts,
            op_max=self.op_max(),
            op_checkpoint=op_checkpoint,
            op_prepare_max=op_prepare_max,
            faulty_slots=tuple(faulty),
            torn_ops=tuple(torn_ops),
            fixed_slots=tuple(s for s, d in sorted(decisions.items()) if d == Decision.FIX),
            cut_slots=tuple(
                s for s, d in sorted(decisions.items()) if d in (Decision.CUT, Decision.CUT_TORN)
            ),
            counters=dict(self.counters),
        )
        logger.info(
            "replica=%d journal recovered op_max=%d faulty=%d torn=%d cases=%s",
            self.replica, result.op_max, len(faulty), len(torn_ops), cases,
        )  # fmt: skip
        return result

    def _read_rings(self) -> list[_SlotRead]:
        n = self.layout.slot_count
        ring = self._read_header_ring()
        self._mirror = bytearray(ring)
        reads: list[_SlotRead] = []
        for slot in range(n):
            header = self._valid_redundant_header(slot, ring[slot * HEADER_SIZE : (slot + 1) * HEADER_SIZE])
            if header is None:
                self._count("recovery_header_invalid")
            prepare = self._recover_prepare(slot)
            reads.append(_SlotRead(slot=slot, header=header, prepare=prepare))
        return reads

    def _read_header_ring(self) -> bytes:
        """The whole header ring; a sector that fails with EIO reads as zeros (all its headers invalid)."""
        try:
            return self.storage.read(self.layout.wal_headers_offset, self.layout.wal_headers_size)
        except StorageIOError:
            pass
        sectors: list[bytes] = []
        for sector in range(self.layout.wal_header_sector_count):
            try:
                sectors.append(self.storage.read(self.layout.header_sector_offset(sector), SECTOR_SIZE))
            except StorageIOError:
                self._count("recovery_read_eio")
                sectors.append(bytes(SECTOR_SIZE))
        return b"".join(sectors)

    def _recover_prepare(self, slot: int) -> Header | None:
        """P for ``slot``: the valid prepare header (fully verified, body included), or None."""
        try:
            first = self.storage.read(self.layout.prepare_offset(slot), SECTOR_SIZE)
            header = self._valid_prepare_header(slot, first)
            if header is None:
                self._count("recovery_prepare_invalid")
                return None
            if header.command == Command.RESERVED:
                return header
            if self._read_body(slot, header, first) is None:
                self._count("recovery_prepare_invalid")
                return None
            return header
        except StorageIOError:
            self._count("recovery_read_eio")
            return None

    def _torn_slots(
        self,
        reads: list[_SlotRead],
        decisions: dict[int, Decision],
        *,
        op_max: int,
        op_checkpoint: int,
        op_prepare_max: int,
    ) -> tuple[list[int], list[int]]:
        """Faulty slots above the head that provably hold no acknowledged op: (torn, stale).

        Above the head, slot s can only matter for its one op o in (op_max, op_prepare_max].
        Under crash faults o's slot looks like one of:

        - **torn**: a valid header that is reserved or from an older wrap (the header is written
          after the prepare is synced, so it was not written yet) over an unreadable prepare: o's
          prepare was in flight at the crash, so it was never acknowledged;
        - **stale**: an unreadable header over a valid prepare from before the checkpoint (or a
          reserved one): o was never written here (had its prepare been synced, P would show o),
          and the header was torn by a neighbour's header-sector write. P's op is already in the
          snapshot, so nothing is lost by discarding it.

        If *any* faulty slot in the range looks otherwise (both copies lost, a header newer than
        its prepare, ...), or more are torn than could have been in flight, the real head may be
        hidden there: cut nothing, and the slots stay faulty (the replica's head is uncertain).
        """
        head = max(op_max, op_checkpoint)  # the snapshot holds every op up to the checkpoint
        if head >= op_prepare_max:
            return [], []
        n = self.layout.slot_count
        torn: list[int] = []
        stale: list[int] = []
        for op in range(head + 1, op_prepare_max + 1):
            slot = op % n
            if decisions[slot] != Decision.VSR:
                continue
            header, prepare = reads[slot].header, reads[slot].prepare
            if (
                header is not None
                and prepare is None
                and (header.command == Command.RESERVED or header.op < op)
            ):
                torn.append(slot)
            elif (
                header is None
                and prepare is not None
                and (prepare.command == Command.RESERVED or prepare.op <= op_checkpoint)
            ):
                stale.append(slot)
            else:
                return [], []
        if len(torn) > PREPARE_WRITES_IN_FLIGHT_MAX:
            return [], []
        return torn, stale

    def _bug_truncate_at_first_mismatch(
        self, reads: list[_SlotRead], decisions: dict[int, Decision], *, op_max: int
    ) -> None:
        """PLANTED BUG (docs/vr.md bug #9): treat any prepare checksum mismatch as the torn tail and truncate
        the log from the first such op, committed or not (the ZooKeeper/LogCabin behaviour)."""
        n = self.layout.slot_count
        mismatched = [
            read.header.op
            if read.header is not None and read.header.command == Command.PREPARE
            else _op_for_slot_after(read.slot, op_max - n, n)
            for read in reads
            if decisions[read.slot] == Decision.VSR and read.prepare is None
        ]
        if not mismatched:
            return
        first = min(mismatched)
        for read in reads:
            ops = [
                h.op for h in (read.header, read.prepare) if h is not None and h.command == Command.PREPARE
            ]
            lost = decisions[read.slot] == Decision.VSR and read.prepare is None
            if lost or any(op >= first for op in ops):
                decisions[read.slot] = Decision.CUT_TORN
        self._count("bug_truncated_from_op")

    def _apply(self, reads: list[_SlotRead], decisions: dict[int, Decision]) -> None:
        """Load beliefs and write the fixes and cuts durably (prepares before headers)."""
        n = self.layout.slot_count
        self._headers = [None] * n
        self._dirty.clear()
        self._faulty.clear()
        self._inhabited.clear()
        self._staged.clear()
        self._staged_reserved.clear()
        self._staged_headers.clear()
        fix_slots: list[int] = []
        cut_slots: list[int] = []
        for read in reads:
            slot, prepare = read.slot, read.prepare
            decision = decisions[slot]
            if (
                prepare is not None
                and prepare.command == Command.PREPARE
                and decision not in (Decision.CUT, Decision.CUT_TORN)
            ):
                self._inhabited[slot] = prepare.checksum
            if decision in (Decision.EQL, Decision.FIX):
                assert decision == Decision.FIX or (
                    prepare is not None and prepare.command == Command.PREPARE
                )
                if prepare is not None and prepare.command == Command.PREPARE:
                    self._headers[slot] = prepare
                if decision == Decision.FIX:
                    fix_slots.append(slot)
            elif decision == Decision.VSR:
                self._faulty.add(slot)
                self._dirty.add(slot)
                self._count("faulty_slot")
                header = read.header
                if (
                    header is not None
                    and header.command == Command.PREPARE
                    and self.op_checkpoint < header.op <= self.op_prepare_max
                    and (prepare is None or prepare.command == Command.RESERVED or prepare.op < header.op)
                ):
                    # A valid header whose prepare is lost (rot, a lost or misdirected write) still
                    # names the op and its checksum: keep that belief, faulty, so the op counts in
                    # our head and our log (never "never had it") and is repaired by (op, checksum).
                    self._headers[slot] = header
            elif decision in (Decision.CUT, Decision.CUT_TORN):
                cut_slots.append(slot)
                self._count("torn_cut" if decision == Decision.CUT_TORN else "cut")
        self._op_max = _max_op(self._headers)
        if cut_slots:
            self._staged_reserved.update(cut_slots)  # a slot whose write fails (EIO) stays staged
            self.flush()
        if fix_slots:
            for slot in fix_slots:
                read = reads[slot]
                self._set_mirror(
                    slot, read.prepare if read.prepare is not None else self._reserved_headers[slot]
                )
            failed = self._write_header_sectors(fix_slots)
            self._sync()
            for slot in fix_slots:
                if self.layout.header_sector_for_slot(slot) in failed:
                    self._dirty.add(
                        slot
                    )  # not clean: the replica re-fetches it (or the next recovery fixes it again)
            self._count("fixed", len(fix_slots))

    # Helpers ---------------------------------------------------------------------------------

    def _set_header(self, slot: int, header: Header) -> None:
        previous = self._headers[slot]
        self._headers[slot] = header
        if previous is not None and previous.op > header.op:
            self._op_max = _max_op(self._headers)
        else:
            self._op_max = max(self._op_max, header.op)

    def _set_mirror(self, slot: int, header: Header) -> None:
        self._mirror[slot * HEADER_SIZE : (slot + 1) * HEADER_SIZE] = header.encode()

    def _sync(self) -> None:
        self.storage.sync()
        self.sync_count += 1

    def _count(self, kind: str, amount: int = 1) -> None:
        self.counters[kind] = self.counters.get(kind, 0) + amount


def _max_op(headers: list[Header | None]) -> int:
    return max((h.op for h in headers if h is not None), default=0)


def _pad(data: bytes) -> bytes:
    return data + bytes(align_up(len(data)) - len(data))


def _op_max_seen(reads: list[_SlotRead], op_prepare_max: int) -> int:
    """Highest op of any valid non-reserved header or prepare within the window (0 if none)."""
    ops = [
        h.op
        for read in reads
        for h in (read.header, read.prepare)
        if h is not None and h.command == Command.PREPARE and h.op <= op_prepare_max
    ]
    return max(ops, default=0)


def _op_for_slot_after(slot: int, op_floor: int, slot_count: int) -> int:
    """The smallest op > op_floor that lives in ``slot``."""
    op = max(op_floor + 1, 0)
    return op + (slot - op) % slot_count


__all__ = [
    "BUG_TRUNCATE_ON_CHECKSUM_MISMATCH",
    "COLUMNS",
    "PREPARE_WRITES_IN_FLIGHT_MAX",
    "RECOVERY_CASES",
    "Case",
    "Decision",
    "Journal",
    "JournalError",
    "JournalRecovery",
    "SlotFacts",
    "classify",
    "matching_cases",
]
