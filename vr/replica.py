"""One VR Revisited replica as a deterministic state machine over messages and ticks.

The replica's inputs are ``on_message(message)``, ``tick()``, ``begin_flush()`` (the end
of a batch: start a journal group commit) and ``complete_flush(flush, done)`` (the
storage-completion input: the group commit is durable; act on it, then send every
message that waited for it); ``flush()`` is the two back to back. Its only side effects go through what it is given: the bus, the
journal/superblock/snapshot store on its storage, the ``emit`` event sink, and a
seeded ``random.Random``. It never reads a clock (the wall clock it may be given is
used only by the ``lease-read-wall-clock`` planted bug), so the simulator runs this
exact code and a seed reproduces every step.

Protocol (docs/vr.md §1, storage and recovery §2):

- Normal operation: the primary batches client requests into prepares (a prepare body
  is a batch of request messages), keeps a pipeline of up to ``pipeline_max`` of them
  (with ``prepare_nagle``, a batch that is not full waits while a prepare is in flight, until
  the pipeline drains or a whole tick has passed: fewer, bigger prepares; bench/vr_throughput.py at 50
  clients measured 0.25 instead of 0.42 fsyncs per op and 19% less node CPU per op),
  commits op n once a replication quorum durably holds every op <= n (a backup's
  PrepareOk for (op, checksum) means "I durably hold this op and the whole hash chain
  below it"), executes in op order and replies. Idle primaries send commit heartbeats.
- Every op is identified by (op, checksum) and hash-chained to its parent, so a backup
  that missed prepares (or holds stale ones from an older view) repairs them from peers
  by (op, checksum): it asks for headers to rebuild the chain from its head down, then
  for the prepares the chain names. A replica never nacks an entry it lost (faulty).
- View change: start-view-change, then do-view-change carrying the suffix of headers
  with present/nack bits; the new primary takes the log with the highest
  (log_view, op), truncates an op only when a nack quorum proves it uncommitted, and
  broadcasts start-view. view/log_view are durable in the superblock before any message
  that advertises them is sent.
- State transfer: a replica too far behind for the ring (the ops it needs were
  overwritten) takes the primary's checkpoint snapshot (REQUEST_SYNC/SYNC).
- Restart: superblock + checkpoint snapshot + journal recovery, replay of committed
  ops; a replica whose head is uncertain (faulty slots where a newer op may hide)
  stays in ``recovering_head`` until a start-view from a live primary proves its head
  (it may vote in a *newer* view, flagged uncertain, so it never nacks by silence). A
  restarted primary never resumes its view: it starts a view change.
- A primary that hears from too few backups to commit stops sending heartbeats and
  prepares (abdicates), so a one-way partition cannot keep a deaf primary in office.
- Only PrepareOk, DoViewChange and StartView wait for the journal flush (they vouch for
  durable state); prepares, commits, replies and repair traffic leave at once.

"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from vr.journal import Journal
from vr.journal_flush import FlushDone, JournalFlush
from vr.layout import Layout
from vr.message import (
    CLIENT_OPERATIONS,
    HEADER_SIZE,
    MESSAGE_SIZE_MAX,
    Command,
    Header,
    InvalidMessage,
    Message,
    Operation,
    checksum,
    decode_headers,
    decode_message,
    encode_batch,
    encode_headers,
    make_message,
    split_batch,
)
from vr.quorums import quorums
from vr.snapshot import SnapshotRef, SnapshotStore
from vr.state_machine import CLIENTS_MAX, StateMachine, client_seq, encode_reply_body
from vr.storage import Storage
from vr.superblock import SuperBlock, VSRState
from vr.timeout import Timeout

logger = logging.getLogger(__name__)

BITSET_BITS = 128  # present/nack bitsets ride in the 16-byte parent/context fields of a DVC
LEASE_NS = 200_000_000  # lease-read-wall-clock bug only: how long a commit "renews" the lease
LOCAL_READ_FLAG = 1  # REPLY.extra for a read answered from local state (bugs only)
RECOVERING_HEAD_ATTEMPTS_MAX = 5  # unanswered start-view requests before calling a new view

# Messages that claim something about our journal (PrepareOk: "I durably hold every op <= n";
# DoViewChange's present/nack bits; StartView's log) leave only after the journal flush that
# makes the claim true. Everything else (prepares to backups, commits, replies after a quorum
# commit, repair requests) goes out at once, so a prepare reaches the backups in parallel with
# the primary's own fsync instead of after it.
DURABILITY_COMMANDS = frozenset({Command.PREPARE_OK, Command.DO_VIEW_CHANGE, Command.START_VIEW})


class Bus(Protocol):
    def send_to_replica(self, replica: int, message: Message) -> None: ...

    def send_to_client(self, client: int, message: Message) -> None: ...


Emit = Callable[..., None]

PREFIX_WINDOW = 256  # executed (op, checksum) pairs kept for the harness's prefix comparison
STATE_PROBES_MAX = 4  # "hash the state when you execute op N" requests held at once


def _no_emit(kind: str, **fields: Any) -> None:
    del kind, fields


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    """Protocol tunables, in ops and ticks (1 tick = 10 ms in a real node)."""

    pipeline_max: int = 8
    # Nagle for prepares: while a prepare is in flight, a batch that is not full waits (until the
    # pipeline drains or a whole tick has passed) so it grows instead of paying a prepare's fixed
    # cost early.
    prepare_nagle: bool = True
    request_queue_max: int = 1024
    commit_heartbeat_ticks: int = 10
    prepare_retransmit_ticks: int = 15
    normal_heartbeat_ticks: int = 60
    view_change_status_ticks: int = 60
    view_change_resend_ticks: int = 15
    repair_ticks: int = 5
    # A backup whose commit has not moved for this long while the cluster's is ahead stops waiting
    # for a peer's journal and takes the primary's checkpoint (docs/vr.md §2.6).
    repair_stall_ticks: int = 200
    request_start_view_ticks: int = 20
    repair_prepares_max: int = 16
    headers_reply_max: int = 64
    sync_chunk_bytes: int = 256 * 1024  # state sync sends the checkpoint in pieces this big
    clients_max: int = CLIENTS_MAX  # client table size: every replica of a cluster must agree


class Status:
    NORMAL = "normal"
    VIEW_CHANGE = "view_change"
    RECOVERING = "recovering"
    RECOVERING_HEAD = "recovering_head"


@dataclass(slots=True)
class SyncTransfer:
    """A checkpoint arriving in pieces (state sync): which one, and the bytes so far."""

    op: int
    checksum: bytes
    size: int
    data: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class PipelineEntry:
    """An uncommitted op at the primary: who durably holds it (distinct replicas, this view)."""

    header: Header
    message: Message | None
    ok_from: set[int] = field(default_factory=set)
    quorum: bool = False


@dataclass(frozen=True, slots=True)
class ReplicaFlush:
    """A group commit in flight: the journal's I/O, and the messages that wait for it."""

    journal: JournalFlush
    outbox: list[tuple[int, int, Message]]


@dataclass(frozen=True, slots=True)
class DoViewChange:
    """A decoded do-view-change vote."""

    replica: int
    view: int
    log_view: int
    op: int
    commit: int
    headers: dict[int, Header | None]  # op -> header (None = blank: no header known)
    present: frozenset[int]
    nack: frozenset[int]
    head_uncertain: bool = False


def _bitset(bits: set[int]) -> bytes:
    value = 0
    for bit in bits:
        assert 0 <= bit < BITSET_BITS, bit
        value |= 1 << bit
    return value.to_bytes(16, "little")


def _bits(raw: bytes) -> set[int]:
    value = int.from_bytes(raw, "little")
    return {i for i in range(BITSET_BITS) if value >> i & 1}


def _diverged_write(body: bytes) -> bytes:
    """The ``diverge-backup`` planted bug's write or append: same key, a different value (negated, or marked)."""
    try:
        request = json.loads(body)
    except ValueError:
        return body
    if not isinstance(request, dict):
        return body
    value = request.get("value")
    request["value"] = -value if isinstance(value, int) and value else f"{value}~diverged"
    return json.dumps(request, separators=(",", ":")).encode()


def _encoded_reply(
    cluster: int, body: bytes, prepare: Header, client: int, request: int, context: bytes
) -> bytes:
    """The REPLY message (encoded) that executing a request of ``prepare`` stores for its client."""
    reply = make_message(
        command=Command.REPLY,
        cluster=cluster,
        body=body,
        view=prepare.view,
        replica=prepare.replica,
        op=prepare.op,
        commit=prepare.op,
        client=client,
        request=request,
        context=context,
    )
    return reply.header.encode_raw() + body


def encode_checkpoint(*, op: int, op_checksum: bytes, machine: StateMachine) -> bytes:
    """A checkpoint snapshot: the state machine after ``op`` plus that op's checksum (the chain anchor)."""
    return b"%d %s\n" % (op, op_checksum.hex().encode()) + machine.snapshot()


def decode_checkpoint(data: bytes, clients_max: int = CLIENTS_MAX) -> tuple[int, bytes, StateMachine]:
    first, _, rest = data.partition(b"\n")
    op_text, checksum_text = first.split(b" ")
    return int(op_text), bytes.fromhex(checksum_text.decode()), StateMachine.restore(rest, clients_max)


def format_data_file(
    storage: Storage, *, cluster: int, replica: int, replica_count: int, layout: Layout
) -> None:
    """Write a fresh data file: empty checkpoint at op 0, journal with the root prepare, superblock."""
    assert 0 <= replica < replica_count, (replica, replica_count)
    quorums(replica_count)
    journal = Journal(storage, layout, cluster=cluster, replica=replica)
    journal.format()
    snapshots = SnapshotStore(storage, layout)
    root = Header.root(cluster)
    ref = snapshots.write(
        0, encode_checkpoint(op=0, op_checksum=root.checksum, machine=StateMachine()), checkpoint=None
    )
    superblock = SuperBlock(storage, layout)
    superblock.format(
        VSRState(
            cluster=cluster,
            replica=replica,
            replica_count=replica_count,
            view=0,
            log_view=0,
            commit_max=0,
            checkpoint=ref,
            view_headers=(root,),
        )
    )


class Replica:
    """A VR replica; see the module docstring. Build with :meth:`open`."""

    def __init__(
        self,
        *,
        cluster: int,
        replica: int,
        replica_count: int,
        layout: Layout,
        journal: Journal,
        superblock: SuperBlock,
        snapshots: SnapshotStore,
        bus: Bus,
        rng: random.Random,
        bugs: frozenset[str] = frozenset(),
        emit: Emit | None = None,
        wall_clock_ns: Callable[[], int] | None = None,
        options: ReplicaOptions | None = None,
    ) -> None:
        self.cluster = cluster
        self.replica = replica
        self.replica_count = replica_count
        self.layout = layout
        self.journal = journal
        self.superblock = superblock
        self.snapshots = snapshots
        self.bus = bus
        self.rng = rng
        self.bugs = bugs
        self.emit: Emit = emit or _no_emit
        self.wall_clock_ns = wall_clock_ns
        self.options = options or ReplicaOptions()
        self.quorums = quorums(replica_count)
        assert self.options.pipeline_max + 2 <= min(BITSET_BITS, layout.view_headers_max)
        assert self.options.pipeline_max * 4 <= layout.slot_count, "ring too small for the pipeline"
        self.checkpoint_interval_ops = layout.slot_count // 2

        self.status_name = Status.RECOVERING
        self.head_uncertain = False  # recovering_head: a faulty slot may hide an op above our head
        self.recovering_head_attempts = 0
        self.view = 0
        self.log_view = 0
        self.op = 0
        self.commit_min = 0
        self.commit_min_checksum = Header.root(cluster).checksum
        self.commit_max = 0
        self.checkpoint_op = 0
        self.checkpoint_data = b""
        self.checkpoint_checksum = checksum(b"")
        self.sync_transfer: SyncTransfer | None = None
        # (commit_min, tick it was first seen at): how long execution has been stuck behind commit_max.
        self.commit_stall: tuple[int, int] = (0, 0)
        self.machine = StateMachine(self.options.clients_max)

        self.pipeline: list[PipelineEntry] = []
        self.request_queue: list[Message] = []
        # Requests were still queued at the last tick: the next tick prepares them even if a prepare
        # is in flight (prepare_nagle holds a request at most until the pipeline drains or one whole
        # tick has passed; whole, so the simulator, which ticks every step, holds requests too).
        self.request_queue_held = False
        self.inflight_requests: dict[int, int] = {}  # client -> request number queued or prepared
        self.prepares: dict[int, Message] = {}  # op -> prepare not yet executed (cache)
        # op -> (prepare checksum, its requests) for prepares this primary built: executing one
        # need not split its body back into the messages it was just made of.
        self.prepared_batches: dict[int, tuple[bytes, list[Message]]] = {}
        self.svc_from: set[int] = set()
        self.dvc_from: dict[int, DoViewChange] = {}
        self.dvc_sent = False
        self.acked_op = 0  # highest op this backup acked in this view
        self.nonce = 0
        self.lease_expiry_ns = 0
        self.outbox: list[tuple[int, int, Message]] = []  # (replica or -1, client, message)
        self.flushing: ReplicaFlush | None = None  # the group commit begun and not yet completed
        self.heard_ticks: dict[int, int] = {}  # replica -> tick we last heard anything from it
        self.head_checksum_hint: tuple[int, bytes] | None = None  # (op, checksum) of a headerless head
        self.ticks = 0
        self.commit_hook: Callable[[int, Message], None] | None = None  # simulator only
        # For the harness's convergence check (contracts §3): the last executed ops' checksums, and
        # op -> state digest taken when that op executed (None: armed, not yet reached).
        self.executed_recent: deque[tuple[int, bytes]] = deque(maxlen=PREFIX_WINDOW)
        self.state_probes: dict[int, dict[str, Any] | None] = {}

        self.counters: dict[str, Any] = {
            "view_changes": 0,
            "prepares": 0,
            "commits": 0,
            "repairs": 0,
            "state_transfers": 0,
            "storage_faults": 0,
            "checkpoints": 0,
            "dropped": {},
        }
        o = self.options
        self.commit_heartbeat_timeout = Timeout("commit_heartbeat", o.commit_heartbeat_ticks, rng)
        self.prepare_timeout = Timeout("prepare_retransmit", o.prepare_retransmit_ticks, rng)
        self.normal_heartbeat_timeout = Timeout("normal_heartbeat", o.normal_heartbeat_ticks, rng)
        self.view_change_status_timeout = Timeout("view_change_status", o.view_change_status_ticks, rng)
        self.view_change_resend_timeout = Timeout("view_change_resend", o.view_change_resend_ticks, rng)
        self.repair_timeout = Timeout("repair", o.repair_ticks, rng)
        self.request_start_view_timeout = Timeout("request_start_view", o.request_start_view_ticks, rng)
        self.timeouts = [
            self.commit_heartbeat_timeout,
            self.prepare_timeout,
            self.normal_heartbeat_timeout,
            self.view_change_status_timeout,
            self.view_change_resend_timeout,
            self.repair_timeout,
            self.request_start_view_timeout,
        ]

    # ------------------------------------------------------------------------------------------
    # Opening from disk

    @classmethod
    def open(
        cls,
        *,
        storage: Storage,
        layout: Layout,
        bus: Bus,
        cluster: int,
        replica: int,
        replica_count: int,
        seed: int,
        bugs: frozenset[str] = frozenset(),
        emit: Emit | None = None,
        wall_clock_ns: Callable[[], int] | None = None,
        options: ReplicaOptions | None = None,
    ) -> Replica:
        """Open superblock, restore the checkpoint, recover the journal, replay committed ops."""
        superblock = SuperBlock(storage, layout)
        state = superblock.open()
        if state.cluster != cluster or state.replica != replica or state.replica_count != replica_count:
            raise ValueError(
                f"data file belongs to cluster={state.cluster} replica={state.replica} "
                f"replica_count={state.replica_count}, not cluster={cluster} replica={replica} "
                f"replica_count={replica_count}"
            )
        snapshots = SnapshotStore(storage, layout)
        data = snapshots.read(state.checkpoint)
        if data is None:
            raise RuntimeError(
                f"checkpoint snapshot at op {state.checkpoint.op} is unreadable (checksum or EIO); "
                "this replica cannot restore its state from its own disk"
            )
        journal = Journal(storage, layout, cluster=cluster, replica=replica, bugs=bugs)
        self = cls(
            cluster=cluster,
            replica=replica,
            replica_count=replica_count,
            layout=layout,
            journal=journal,
            superblock=superblock,
            snapshots=snapshots,
            bus=bus,
            rng=random.Random(seed),
            bugs=bugs,
            emit=emit,
            wall_clock_ns=wall_clock_ns,
            options=options,
        )
        self._open(state, data)
        return self

    def _open(self, state: VSRState, data: bytes) -> None:
        op, op_checksum, machine = decode_checkpoint(data, self.options.clients_max)
        assert op == state.checkpoint.op, (op, state.checkpoint)
        self.machine = machine
        self.commit_min = op
        self.commit_min_checksum = op_checksum
        self.executed_recent.append((op, op_checksum))
        self.checkpoint_op = op
        self.checkpoint_data = data
        self.checkpoint_checksum = checksum(data)
        recovery = self.journal.recover(op_checkpoint=op, solo=self.replica_count == 1)
        self.view = state.view
        self.log_view = state.log_view
        self.commit_max = max(state.commit_max, op)

        view_head = self.commit_min
        for header in state.view_headers:
            if header.op > op + self.layout.slot_count:
                continue
            view_head = max(view_head, header.op)
            if header.op > self.commit_min and self.journal.header_for_op(header.op) != header:
                self.journal.set_header_as_dirty(header)
        # Entries above the durable view headers from an older view were truncated by a
        # view change but not yet overwritten: they must not resurrect (docs/vr.md §2.3).
        op_max = self.journal.op_max()
        for candidate in range(view_head + 1, op_max + 1):
            stale = self.journal.header_for_op(candidate)
            if stale is not None and stale.view < self.log_view:
                self.journal.remove_entries_from(candidate)
                break
        if self.log_view < self.view:
            head = view_head
            if self.journal.op_max() > head:
                self.journal.remove_entries_from(head + 1)
        else:
            head = max(view_head, self.journal.op_max())
        self.op = max(head, self.commit_min)
        for candidate in range(max(self.commit_min, self.op - self.options.pipeline_max * 2), self.op + 1):
            recent = self.journal.header_for_op(candidate)
            if recent is not None:
                self.commit_max = max(self.commit_max, recent.commit)

        faulty = self.journal.faulty_slots()  # a faulty slot may not even know its op
        self.counters["storage_faults"] += len(faulty)
        if faulty:
            self.emit(
                "storage_fault",
                slots=faulty[:32],
                ops=self.journal.faulty_ops()[:32],
                count=len(faulty),
                when="recovery",
            )
        head_certain = self._head_certain()
        self.emit(
            "recovered_from_disk",
            view=self.view,
            log_view=self.log_view,
            op=self.op,
            commit_min=self.commit_min,
            commit_max=self.commit_max,
            checkpoint=self.checkpoint_op,
            faulty=len(faulty),
            head_certain=head_certain,
            recovery=_recovery_summary(recovery),
        )
        self._commit_journal()
        if self.replica_count == 1:
            self._transition_to_solo_primary()
        elif not head_certain:
            self.status_name = Status.RECOVERING_HEAD
            self.head_uncertain = True
            self.nonce = self.rng.getrandbits(63) | 1
            self.request_start_view_timeout.start()
            self._send_request_start_view()
        elif self.log_view == self.view:
            if self._primary_index(self.view) == self.replica:
                # Even a log that looks empty may have lost ops a backup quorum committed (the
                # acks need not include ours): never resume leading the view we crashed in.
                self.status_name = Status.NORMAL  # briefly: we step down at once
                self._transition_to_view_change(self.view + 1)
            else:
                self._transition_to_normal_backup()
        else:
            self.status_name = Status.NORMAL
            self._transition_to_view_change(self.view, restarted=True)

    def _head_certain(self) -> bool:
        """False if a faulty slot could hide an op newer than our head (docs/vr.md §2.5)."""
        faulty_slots = set(self.journal.faulty_slots())
        if not faulty_slots:
            return True
        op_prepare_max = self.checkpoint_op + self.layout.slot_count
        for op in range(self.op, op_prepare_max + 1):
            if op % self.layout.slot_count in faulty_slots:
                return False
        return True

    # ------------------------------------------------------------------------------------------
    # Inputs

    def on_message(self, message: Message) -> None:
        header = message.header
        if header.cluster != self.cluster:
            self._drop("cluster")
            return
        command = header.command
        if command == Command.REQUEST:
            # No invariant check here: a request only queues (or is answered from the client
            # table); it changes nothing _invariants covers, and flush() checks them right after.
            self._on_request(message)
            return
        if 0 <= header.replica < self.replica_count:
            self.heard_ticks[header.replica] = self.ticks
        if command in (Command.PING, Command.PONG, Command.STATUS_REQUEST, Command.STATUS_REPLY):
            return
        elif not (0 <= header.replica < self.replica_count) or (
            header.replica == self.replica
            and command != Command.PREPARE  # a repaired prepare keeps its author
        ):
            self._drop("sender")
            return
        else:
            handler = self._handlers.get(command)
            if handler is None:
                self._drop("unexpected-command")
                return
            handler(self, message)
        self._invariants()

    def tick(self) -> None:
        self.ticks += 1
        for timeout in self.timeouts:
            timeout.tick()
        if self.commit_heartbeat_timeout.fired():
            self.commit_heartbeat_timeout.reset()
            self._on_commit_heartbeat_timeout()
        if self.prepare_timeout.fired():
            self.prepare_timeout.reset()
            self._on_prepare_timeout()
        if self.normal_heartbeat_timeout.fired():
            self.normal_heartbeat_timeout.reset()
            self._on_normal_heartbeat_timeout()
        if self.view_change_status_timeout.fired():
            self.view_change_status_timeout.backoff()
            self._on_view_change_status_timeout()
        if self.view_change_resend_timeout.fired():
            self.view_change_resend_timeout.reset()
            self._on_view_change_resend_timeout()
        if self.repair_timeout.fired():
            self.repair_timeout.reset()
            self._repair()
        if self.request_start_view_timeout.fired():
            self.request_start_view_timeout.reset()
            self._on_request_start_view_timeout()
        if self._is_primary_normal() and not self._primary_abdicating():
            self._primary_prepare_queued(linger=not self.request_queue_held)
        self.request_queue_held = bool(self.request_queue)
        self._invariants()

    def flush(self) -> None:
        """Storage completion, here and now: ``begin_flush``, its I/O on our storage, ``complete_flush``.

        For callers without an I/O thread (tests, a node's last flush at a clean stop). A flush
        begun and not completed is run and completed here first (a node drains its I/O thread
        before calling this; the simulator drops a completion that was delivered this way).
        """
        if self.flushing is not None:
            in_flight = self.flushing
            self.complete_flush(in_flight, in_flight.journal.run(self.journal.storage))
        flush = self.begin_flush()
        if flush is None:
            return
        # Push the messages that need no durability (new prepares above all) onto the wire
        # before we block in fsync: a bus that batches sends offers flush_sends() for this.
        flush_sends = getattr(self.bus, "flush_sends", None)
        if flush_sends is not None:
            flush_sends()
        self.complete_flush(flush, flush.journal.run(self.journal.storage))

    def begin_flush(self) -> ReplicaFlush | None:
        """Input: the end of a batch of messages or a tick. Start a group commit if none is in flight.

        A primary turns queued requests into prepares first (sent at once: they need no
        durability). If a flush is in flight, what was staged since waits for the next one,
        and so do the messages that vouch for it. Otherwise the journal's staged writes and
        the messages waiting for them become a :class:`ReplicaFlush`: the caller runs
        ``flush.journal.run(storage)`` (a node: on its I/O thread) and hands the result to
        :meth:`complete_flush`, the storage-completion input. With nothing to write the
        waiting messages leave now and None is returned.
        """
        if self._is_primary_normal() and not self._primary_abdicating():
            self._primary_prepare_queued()
        if self.flushing is not None:
            return None
        journal_flush = self.journal.begin_flush()
        outbox, self.outbox = self.outbox, []
        if journal_flush is None:
            self._send_released(outbox)
            self._invariants()
            return None
        self.flushing = ReplicaFlush(journal_flush, outbox)
        self._invariants()
        return self.flushing

    def complete_flush(self, flush: ReplicaFlush, done: FlushDone) -> None:
        """Input: the group commit ``flush`` is durable (``done`` says which writes failed).

        Acts on what became durable (a backup acks, a primary counts its own copy) and sends
        the messages that waited for this flush. Messages queued while it was in flight vouch
        for state it may not cover, so they wait for the next flush.
        """
        assert self.flushing is flush, "completing a flush that is not in flight"
        self.flushing = None
        waiting, self.outbox = self.outbox, []
        durable = self.journal.complete_flush(flush.journal, done)
        if durable:
            self._on_durable(durable)
        released = flush.outbox + self.outbox
        self.outbox = waiting
        self._send_released(released)
        self._invariants()

    def _send_released(self, outbox: list[tuple[int, int, Message]]) -> None:
        for replica, client, message in outbox:
            if replica >= 0:
                self.bus.send_to_replica(replica, message)
            else:
                self.bus.send_to_client(client, message)

    # ------------------------------------------------------------------------------------------
    # Status for the harness

    def status(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "status": self.status_name,
            "view": self.view,
            "log_view": self.log_view,
            "op": self.op,
            "commit": self.commit_max,
            "commit_min": self.commit_min,
            "primary": self._primary_index(self.view),
            "checkpoint": self.checkpoint_op,
            "counters": {**self.counters, "dropped": dict(self.counters["dropped"])},
        }

    def convergence(
        self, *, probe_op: int | None = None, keys: bool = False, values: Sequence[str] = ()
    ) -> dict[str, Any]:
        """What the harness compares across replicas (contracts §3): executed prefix and state hashes.

        ``prefix`` lists the last executed ops' checksums (the hash chain makes one equal
        checksum vouch for the whole prefix below it); ``state`` hashes the state machine at
        ``commit_min``, computed now. ``probe_op`` arms a probe: the state is hashed when that
        op executes, so replicas still moving under load are compared at one common op.
        ``keys`` adds per-key value hashes, asked for only once hashes differ; ``values`` the
        current values of the keys named (to show how they differ).
        """
        if probe_op is not None:
            self._arm_state_probe(probe_op)
        state: dict[str, Any] = {"op": self.commit_min, **self.machine.digest().to_json()}
        if keys:
            state["key_hashes"] = self.machine.key_hashes()
        if values:
            state["values"] = {key: self.machine.kv.get(key) for key in values}
        probes: dict[str, Any] = {}
        for op, probe in self.state_probes.items():
            if probe is not None and not keys:
                probe = {k: v for k, v in probe.items() if k != "key_hashes"}
            probes[str(op)] = probe
        return {
            "commit_min": self.commit_min,
            "commit_checksum": self.commit_min_checksum.hex(),
            "prefix": [[op, c.hex()] for op, c in self.executed_recent],
            "state": state,
            "probes": probes,
        }

    def _arm_state_probe(self, op: int) -> None:
        if op in self.state_probes:
            return
        while len(self.state_probes) >= STATE_PROBES_MAX:
            del self.state_probes[next(iter(self.state_probes))]
        if op > self.commit_min:
            self.state_probes[op] = None
        elif op == self.commit_min:
            self.state_probes[op] = None
            self._take_state_probe(op)
        else:
            self.state_probes[op] = {"op": op, "skipped": "already executed when the probe was armed"}

    def _take_state_probe(self, op: int) -> None:
        """The state right after executing ``op`` (off the hot path: only for armed ops)."""
        self.state_probes[op] = {
            "op": op,
            **self.machine.digest().to_json(),
            "key_hashes": self.machine.key_hashes(),
        }

    def _state_jumped(self, op: int) -> None:
        """State sync installed the state at ``op``: probes it jumped over will never be taken."""
        self.executed_recent.append((op, self.commit_min_checksum))
        for armed, probe in list(self.state_probes.items()):
            if probe is None and armed == op:
                self._take_state_probe(op)
            elif probe is None and armed < op:
                self.state_probes[armed] = {"op": armed, "skipped": f"state sync jumped to op {op}"}

    # ------------------------------------------------------------------------------------------
    # Helpers

    def _primary_index(self, view: int) -> int:
        return view % self.replica_count

    def _is_primary(self) -> bool:
        return self._primary_index(self.view) == self.replica

    def _is_primary_normal(self) -> bool:
        return self.status_name == Status.NORMAL and self._is_primary()

    def _drop(self, reason: str) -> None:
        dropped: dict[str, int] = self.counters["dropped"]
        dropped[reason] = dropped.get(reason, 0) + 1

    def _send(self, replica: int, message: Message) -> None:
        """Send now, unless the message vouches for our durable journal: then after the next flush."""
        assert replica != self.replica
        if message.header.command in DURABILITY_COMMANDS:
            self.outbox.append((replica, 0, message))
        else:
            self.bus.send_to_replica(replica, message)

    def _broadcast(self, message: Message) -> None:
        for replica in range(self.replica_count):
            if replica != self.replica:
                self._send(replica, message)

    def _send_client(self, client: int, message: Message) -> None:
        # Replies follow a commit, which already needed a replication quorum of durable copies.
        self.bus.send_to_client(client, message)

    def _message(self, command: Command, body: bytes = b"", **fields: Any) -> Message:
        fields.setdefault("view", self.view)
        fields.setdefault("replica", self.replica)
        return make_message(command=command, cluster=self.cluster, body=body, **fields)

    @property
    def op_prepare_max(self) -> int:
        """The highest op the ring may hold without overwriting an op newer than the checkpoint."""
        return self.checkpoint_op + self.layout.slot_count

    def _prepare_message(self, op: int, checksum: bytes) -> Message | None:
        cached = self.prepares.get(op)
        if cached is not None and cached.header.checksum == checksum:
            return cached
        header = self.journal.header_for_op(op)
        believed = header is not None and header.checksum == checksum
        held = believed and self.journal.has_prepare(header)
        if believed and not held and not self.journal.holds_intact(op, checksum):
            return None  # dirty (never written here) or faulty (known bad): reading proves nothing
        # Asked even without a header belief: a torn header sector can leave a slot faulty with
        # its prepare intact, and that copy may be the last one (the journal re-verifies it and,
        # for a slot it does not believe it holds, returns None without I/O or marking anything).
        message = self.journal.read_prepare(op, checksum)
        if message is None and held:
            self.counters["storage_faults"] += 1
            self.emit("storage_fault", ops=[op], count=1, when="read")
        return message

    def _chain_expected(self) -> dict[int, bytes]:
        """op -> checksum the hash chain from our head names, for (commit_min, op], until a break."""
        expected: dict[int, bytes] = {}
        if self.op <= self.commit_min:
            return expected
        head = self.journal.header_for_op(self.op)
        if head is not None:
            want = head.checksum
        elif self.head_checksum_hint is not None and self.head_checksum_hint[0] == self.op:
            want = self.head_checksum_hint[1]  # named by a start-view whose primary lacked the header
        else:
            return expected
        for op in range(self.op, self.commit_min, -1):
            expected[op] = want
            header = self.journal.header_for_op(op)
            if header is None or header.checksum != want:
                break
            want = header.parent
        return expected

    # ------------------------------------------------------------------------------------------
    # Requests

    def _on_request(self, message: Message) -> None:
        header = message.header
        reason = self._ignore_request(message)
        if reason is not None:
            self._drop(reason)
            return
        if not self._is_primary():
            if "read-from-backup" in self.bugs and header.operation == Operation.READ:
                self._reply_locally(message)
                return
            self._send_client(
                header.client,
                self._message(Command.REDIRECT, client=header.client, request=header.request),
            )
            return
        if (
            "lease-read-wall-clock" in self.bugs
            and header.operation == Operation.READ
            and self.wall_clock_ns is not None
            and self.wall_clock_ns() < self.lease_expiry_ns
        ):
            self._reply_locally(message)
            return
        if "no-client-table" not in self.bugs:
            entry = self.machine.clients.get(header.client)
            if entry is not None and header.request <= entry.request:
                if header.request == entry.request and header.checksum == entry.request_checksum:
                    self._send_client(header.client, self._live_reply(entry.reply))
                    return
                self._drop("request-stale" if header.request < entry.request else "request-checksum-mismatch")
                return
            inflight = self.inflight_requests.get(header.client)
            if inflight is not None and header.request <= inflight:
                self._drop("request-in-flight")
                return
            if inflight is None and not self.machine.clients.admits(header.client, header.request):
                self._drop("request-evicted")
                self._send_client(header.client, self._eviction(header))
                return
        if len(self.request_queue) >= self.options.request_queue_max:
            self._drop("request-queue-full")
            return
        self.request_queue.append(message)
        self.inflight_requests[header.client] = header.request

    def _ignore_request(self, message: Message) -> str | None:
        header = message.header
        if header.client == 0 or header.request == 0:
            return "request-invalid"
        if header.operation not in CLIENT_OPERATIONS:
            return "request-operation"
        if header.size + HEADER_SIZE > self.layout.prepare_size_max:
            return "request-too-large"
        if self.status_name != Status.NORMAL:
            return "request-not-normal"
        if self._is_primary():
            if self.commit_min < self.commit_max:
                return "request-primary-behind"  # the client table is only complete once we executed all
            for entry in self.pipeline:
                if entry.message is None:
                    return "request-primary-repairing"
        return None

    def _reply_locally(self, message: Message) -> None:
        """Planted bugs only: answer a read from local state, bypassing the log."""
        result = self.machine.execute(message.header.operation, message.body)
        reply = self._message(
            Command.REPLY,
            body=encode_reply_body(result),
            op=self.commit_min,
            commit=self.commit_min,
            client=message.header.client,
            request=message.header.request,
            context=message.header.checksum,
            extra=LOCAL_READ_FLAG,
        )
        self._send_client(message.header.client, reply)

    def _eviction(self, request: Header) -> Message:
        """Tell a client its session was evicted from the client table (its outcome is unknown)."""
        return self._message(
            Command.EVICTION,
            body=b'{"error":"evicted"}',
            client=request.client,
            request=request.request,
            context=request.checksum,
        )

    def _live_reply(self, stored: bytes) -> Message:
        """A stored reply re-sealed with our current view, so the client learns the primary."""
        reply = decode_message(stored, cluster=self.cluster)
        return Message(reply.header.replace(view=self.view, replica=self.replica), reply.body)

    def _primary_abdicating(self) -> bool:
        """True if we have not heard from enough backups to commit (CheckQuorum-like).

        A primary that can send but not receive would otherwise keep resetting the backups'
        heartbeat timeouts forever while committing nothing.
        """
        horizon = self.ticks - self.options.normal_heartbeat_ticks
        heard = sum(1 for r, t in self.heard_ticks.items() if r != self.replica and t >= horizon)
        return heard + 1 < self.quorums.replication

    def _track_inflight(self, prepare: Message | None) -> None:
        """Remember the requests of an uncommitted prepare so a retry is not prepared twice."""
        if prepare is None:
            return
        for request in split_batch(prepare.body):
            previous = self.inflight_requests.get(request.header.client, 0)
            self.inflight_requests[request.header.client] = max(previous, request.header.request)

    def _primary_prepare_queued(self, *, linger: bool = True) -> None:
        assert self._is_primary_normal()
        body_max = self.layout.prepare_size_max - HEADER_SIZE
        while self.request_queue and len(self.pipeline) < self.options.pipeline_max:
            op = self.op + 1
            if op > self.op_prepare_max:
                break
            queue = self.request_queue
            count = 0
            size = 0
            while count < len(queue) and size + queue[count].header.size <= body_max:
                size += queue[count].header.size
                count += 1
            assert count, "a single request larger than a prepare slot was admitted"
            if linger and self.options.prepare_nagle and self.pipeline and count == len(queue):
                break  # not a full batch, and a prepare is in flight: let it grow (see prepare_nagle)
            batch = queue[:count]
            del queue[:count]
            head = self.journal.header_for_op(self.op)
            if head is not None:
                parent = head.checksum
            else:
                # Our head is the executed checkpoint op whose slot was reused or lost: the
                # chain continues from the checksum we executed there.
                assert self.op == self.commit_min, f"primary has no header for its head op {self.op}"
                parent = self.commit_min_checksum
            prepare = self._message(
                Command.PREPARE,
                body=encode_batch(batch),
                op=op,
                commit=self.commit_max,
                parent=parent,
                operation=Operation.BATCH,
            )
            self.journal.write_prepare(prepare)
            self.prepares[op] = prepare
            self.prepared_batches[op] = (prepare.header.checksum, batch)
            self.op = op
            entry = PipelineEntry(prepare.header, prepare)
            if "ack-before-fsync" in self.bugs:
                entry.ok_from.add(self.replica)
            self.pipeline.append(entry)
            self.counters["prepares"] += 1
            self._broadcast(prepare)
            self.commit_heartbeat_timeout.reset()
            if not self.prepare_timeout.ticking:
                self.prepare_timeout.start()
        if "ack-before-fsync" in self.bugs:
            self._primary_commit_pipeline()

    # ------------------------------------------------------------------------------------------
    # Prepares and acks

    def _on_prepare(self, message: Message) -> None:
        header = message.header
        if (
            header.op == 0
            or header.operation != Operation.BATCH
            or header.size > self.layout.prepare_size_max
        ):
            self._drop("prepare-invalid")
            return
        if header.op <= self.op or header.view < self.view:
            self._on_repair(message)
            return
        if header.view > self.view:
            self._drop("prepare-newer-view")
            if self.status_name != Status.RECOVERING_HEAD:
                self._send_request_start_view(to=self._primary_index(header.view))
            return
        reason = self._ignore_prepare(message)
        if reason is not None:
            self._drop(reason)
            return
        self.normal_heartbeat_timeout.reset()
        if header.op == self.op + 1:
            head = self.journal.header_for_op(self.op)
            if head is not None and head.view == self.view and header.parent != head.checksum:
                # Two ops of one view must chain (one primary wrote both). A correct primary never
                # sends this; bytes that claim to be it are dropped and the break is counted.
                self._drop("prepare-chain-break")
                self.counters["chain_breaks"] = self.counters.get("chain_breaks", 0) + 1
                return
        self.journal.write_prepare(message)
        self.prepares[header.op] = message
        self.op = header.op
        self.counters["prepares"] += 1
        if "ack-before-fsync" in self.bugs:
            self.bus.send_to_replica(
                self._primary_index(self.view),
                self._message(
                    Command.PREPARE_OK, op=header.op, context=header.checksum, commit=self.commit_min
                ),
            )
        self._advance_commit_max(header.commit)
        self._commit_journal()

    def _ignore_prepare(self, message: Message) -> str | None:
        header = message.header
        if self.status_name != Status.NORMAL:
            return "prepare-not-normal"
        if self._is_primary():
            return "prepare-to-primary"
        if header.replica != self._primary_index(self.view):
            return "prepare-not-from-primary"
        if header.op > self.op_prepare_max:
            return "prepare-beyond-checkpoint"
        return None

    def _on_repair(self, message: Message) -> None:
        """A prepare for an op at or below our head (retransmit or repair): install only if wanted."""
        header = message.header
        if self.status_name not in (Status.NORMAL, Status.RECOVERING_HEAD):
            self._drop("repair-not-normal")
            return
        if header.op <= self.commit_min:
            self._drop("repair-committed")
            return
        if (
            "duplicate-prepare-no-checksum" in self.bugs
            and self.status_name == Status.NORMAL
            and not self._is_primary()
            and self.journal.header_for_op(header.op) is not None
        ):
            self._send(
                self._primary_index(self.view),
                self._message(
                    Command.PREPARE_OK, op=header.op, context=header.checksum, commit=self.commit_min
                ),
            )
            return
        existing = self.journal.header_for_op(header.op)
        if (
            existing is not None
            and existing.checksum == header.checksum
            and self.journal.has_prepare(existing)
        ):
            if self.status_name == Status.NORMAL and not self._is_primary():
                self.acked_op = min(self.acked_op, header.op - 1)  # re-ack: the primary may have lost it
                self._send_prepare_oks()
            return
        expected = self._chain_expected()
        wanted = expected.get(header.op)
        if wanted != header.checksum and not (existing is not None and existing.checksum == header.checksum):
            self._drop("repair-unwanted")
            return
        if header.op > self.op_prepare_max:
            self._drop("repair-beyond-checkpoint")
            return
        self.journal.write_prepare(message)
        self.prepares[header.op] = message
        self.counters["repairs"] += 1
        self.emit("repaired_slot", op=header.op, checksum=header.checksum.hex()[:8])
        for entry in self.pipeline:
            if entry.header.op == header.op and entry.header.checksum == header.checksum:
                entry.message = message
                self._track_inflight(message)
        self._commit_journal()

    def _on_durable(self, durable: list[Header]) -> None:
        if self.status_name != Status.NORMAL:
            return
        if self._is_primary():
            by_op = {h.op: h for h in durable}
            for entry in self.pipeline:
                h = by_op.get(entry.header.op)
                if h is not None and h.checksum == entry.header.checksum:
                    self._count_prepare_ok(entry, self.replica)
            self._primary_commit_pipeline()
        else:
            self._send_prepare_oks()

    def _send_prepare_oks(self) -> None:
        """Ack the highest op n such that we durably hold every op in (commit_min, n] on our chain."""
        if self.status_name != Status.NORMAL or self._is_primary() or self.log_view != self.view:
            return
        expected = self._chain_expected()
        held = self.commit_min
        for op in range(self.commit_min + 1, self.op + 1):
            want = expected.get(op)
            header = self.journal.header_for_op(op)
            if (
                want is None
                or header is None
                or header.checksum != want
                or not self.journal.has_prepare(header)
            ):
                break
            held = op
        if held <= self.acked_op or held <= self.commit_min:
            return
        header = self.journal.header_for_op(held)
        assert header is not None
        self.acked_op = held
        self._send(
            self._primary_index(self.view),
            self._message(Command.PREPARE_OK, op=held, context=header.checksum, commit=self.commit_min),
        )

    def _on_prepare_ok(self, message: Message) -> None:
        header = message.header
        reason = self._ignore_prepare_ok(message)
        if reason is not None:
            self._drop(reason)
            return
        target = next(e for e in self.pipeline if e.header.op == header.op)
        assert target.header.checksum == header.context
        for entry in self.pipeline:
            if entry.header.op <= header.op:
                self._count_prepare_ok(entry, header.replica)
        self._primary_commit_pipeline()

    def _ignore_prepare_ok(self, message: Message) -> str | None:
        header = message.header
        if self.status_name != Status.NORMAL:
            return "prepare-ok-not-normal"
        if header.view != self.view:
            return "prepare-ok-view"
        if not self._is_primary():
            return "prepare-ok-not-primary"
        entry = next((e for e in self.pipeline if e.header.op == header.op), None)
        if entry is None:
            return "prepare-ok-unknown-op"
        if entry.header.checksum != header.context:
            return "prepare-ok-checksum"
        return None

    def _count_prepare_ok(self, entry: PipelineEntry, replica: int) -> None:
        """Count a distinct replica exactly once; mark the quorum exactly when it is reached."""
        if replica in entry.ok_from:
            return
        entry.ok_from.add(replica)
        if len(entry.ok_from) == self.quorums.replication:
            assert not entry.quorum
            entry.quorum = True

    def _primary_commit_pipeline(self) -> None:
        """Commit contiguously from the front of the pipeline (docs/vr.md bug #20)."""
        if not self._is_primary_normal():
            return
        committed = False
        while self.pipeline and self.pipeline[0].quorum and self.pipeline[0].message is not None:
            entry = self.pipeline.pop(0)
            assert entry.header.op == self.commit_max + 1 or entry.header.op <= self.commit_max, (
                entry.header.op,
                self.commit_max,
            )
            self.commit_max = max(self.commit_max, entry.header.op)
            committed = True
        if committed:
            if "lease-read-wall-clock" in self.bugs and self.wall_clock_ns is not None:
                self.lease_expiry_ns = self.wall_clock_ns() + LEASE_NS
            self._commit_journal()
            if not self.pipeline:
                self.prepare_timeout.stop()

    # ------------------------------------------------------------------------------------------
    # Commit and execution

    def _on_commit(self, message: Message) -> None:
        header = message.header
        if self.status_name != Status.NORMAL or header.view != self.view or self._is_primary():
            if header.view > self.view and self.status_name != Status.RECOVERING_HEAD:
                self._send_request_start_view(to=self._primary_index(header.view))
            elif header.view == self.view and self.status_name == Status.VIEW_CHANGE:
                self._send_request_start_view(to=header.replica)  # the view started without us
            self._drop("commit-ignored")
            return
        if header.replica != self._primary_index(self.view):
            self._drop("commit-not-from-primary")
            return
        self.normal_heartbeat_timeout.reset()
        self._send(header.replica, self._message(Command.PING))  # lets the primary know we hear it
        self._advance_commit_max(header.commit)
        primary_head = header.op
        primary_checkpoint = header.extra
        if primary_checkpoint > self.commit_min and (
            self.commit_min + 1 <= primary_head - self.layout.slot_count + self.options.pipeline_max * 2
            or primary_head > self.op_prepare_max
            or self._commit_stalled()
        ):
            self._request_sync(self._primary_index(self.view))
        elif primary_head > self.op:
            self._send_request_start_view(to=header.replica)
        self._commit_journal()

    def _commit_stalled(self) -> bool:
        """True once our next committed op has stayed out of reach for ``repair_stall_ticks``.

        Repair asks peers' journals, but the only intact copy of a committed op may be inside a
        checkpoint (its prepare rotted everywhere else, and the replica that checkpointed it
        came back by state sync holding no prepare at or below it). Peers never nack a prepare
        they cannot serve, so the backup learns this only by waiting; after a bounded wait it
        takes the primary's checkpoint, which covers the op, like a backup the ring left behind.
        """
        since_op, since_tick = self.commit_stall
        if self.commit_min >= self.commit_max or self.commit_min != since_op:
            self.commit_stall = (self.commit_min, self.ticks)
            return False
        return self.ticks - since_tick >= self.options.repair_stall_ticks

    def _advance_commit_max(self, commit: int) -> None:
        if commit > self.commit_max:
            self.commit_max = commit

    def _commit_journal(self) -> None:
        """Execute committed ops in order, as far as our chain and prepares allow."""
        if self.commit_min >= self.commit_max or self.status_name == Status.RECOVERING_HEAD:
            return
        expected = self._chain_expected()
        while self.commit_min < min(self.commit_max, self.op):
            op = self.commit_min + 1
            want = expected.get(op)
            header = self.journal.header_for_op(op)
            if want is None or header is None or header.checksum != want:
                break
            if header.parent != self.commit_min_checksum:
                self.counters["chain_breaks"] = self.counters.get("chain_breaks", 0) + 1
                break
            prepare = self._prepare_message(op, header.checksum)
            if prepare is None:
                break
            self._execute(prepare)
        self._maybe_checkpoint()

    def _execute(self, prepare: Message) -> None:
        header = prepare.header
        assert header.op == self.commit_min + 1, (header.op, self.commit_min)
        assert header.parent == self.commit_min_checksum
        batches = self.prepared_batches
        while batches and next(iter(batches)) < header.op:
            del batches[next(iter(batches))]  # ops this replica will never execute (a view change, a sync)
        built = batches.pop(header.op, None)
        if built is not None and built[0] == header.checksum:
            requests = built[1]  # the very messages encoded into this body (its checksum says so)
        else:
            requests = split_batch(prepare.body)
        send_replies = self._is_primary_normal()
        live_is_stored = header.view == self.view and header.replica == self.replica
        client_table = "no-client-table" not in self.bugs
        diverge = "diverge-backup" in self.bugs and self.replica == max(
            set(range(self.replica_count)) - {self._primary_index(self.view)}
        )
        machine = self.machine
        clients = machine.clients
        inflight = self.inflight_requests
        for index, request in enumerate(requests):
            rh = request.header
            entry = clients.get(rh.client)
            if client_table:
                assert entry is None or entry.request < rh.request, (
                    f"request executed twice: client={rh.client} request={rh.request} at op {header.op}"
                )
                if not clients.admits(rh.client, rh.request):
                    # Evicted between being prepared and executed: it may be a retry of a request
                    # the evicted session already had executed, so it must not run again.
                    if inflight.get(rh.client) == rh.request:
                        del inflight[rh.client]
                    if send_replies:
                        self._send_client(rh.client, self._eviction(rh))
                    continue
            body = request.body
            if diverge and rh.operation in (Operation.WRITE, Operation.APPEND):
                body = _diverged_write(body)
            reply_body = machine.execute_encoded(rh.operation, body)
            reply: Message | None = None
            stored: bytes | Callable[[], bytes]
            if send_replies:
                reply = make_message(
                    command=Command.REPLY,
                    cluster=self.cluster,
                    body=reply_body,
                    view=header.view,
                    replica=header.replica,
                    op=header.op,
                    commit=header.op,
                    client=rh.client,
                    request=rh.request,
                    context=rh.checksum,
                )
                stored = reply.header.encode_raw() + reply_body
            else:
                # Nobody is sent this reply now; build it only if a retry or a checkpoint asks.
                stored = functools.partial(
                    _encoded_reply, self.cluster, reply_body, header, rh.client, rh.request, rh.checksum
                )
            if entry is not None and entry.request >= rh.request:
                clients.forget(rh.client)  # no-client-table bug: it ran again
            evicted = clients.record(
                client=rh.client,
                request=rh.request,
                request_checksum=rh.checksum,
                reply=stored,
                seq=client_seq(header.op, index),
            )
            if evicted is not None:
                self.counters["clients_evicted"] = self.counters.get("clients_evicted", 0) + 1
            if inflight.get(rh.client) == rh.request:
                del inflight[rh.client]
            if reply is not None:
                # The stored reply names the view and author of its prepare; the live one names
                # ours, so the client learns the primary. In steady state they are the same, and
                # re-sealing an identical header (a second blake2b) would be pure cost.
                if live_is_stored:
                    self._send_client(rh.client, reply)
                else:
                    live = reply.header.replace(view=self.view, replica=self.replica)
                    self._send_client(rh.client, Message(live, reply.body))
        self.commit_min = header.op
        self.commit_min_checksum = header.checksum
        self.prepares.pop(header.op, None)
        self.counters["commits"] += 1
        self.executed_recent.append((header.op, header.checksum))
        if self.state_probes and header.op in self.state_probes:
            self._take_state_probe(header.op)
        if self.commit_hook is not None:
            self.commit_hook(self.replica, prepare)

    def _maybe_checkpoint(self, *, force: bool = False) -> None:
        if self.commit_min < self.checkpoint_op + self.checkpoint_interval_ops and not force:
            return
        if self.commit_min == self.checkpoint_op:
            return
        data = encode_checkpoint(
            op=self.commit_min, op_checksum=self.commit_min_checksum, machine=self.machine
        )
        state = self.superblock.state
        ref = self.snapshots.write(self.commit_min, data, checkpoint=state.checkpoint)
        self._checkpoint_installed(ref, data)

    def _checkpoint_installed(self, ref: SnapshotRef, data: bytes) -> None:
        self.checkpoint_op = ref.op
        self.checkpoint_data = data
        self.checkpoint_checksum = ref.checksum
        self._superblock_update(checkpoint=ref)
        self.journal.set_op_checkpoint(ref.op)
        self.counters["checkpoints"] += 1
        self.emit("checkpoint", op=ref.op)

    def _superblock_update(
        self, *, checkpoint: SnapshotRef | None = None, view_headers: tuple[Header, ...] | None = None
    ) -> None:
        state = self.superblock.state
        new = dataclasses.replace(
            state,
            view=self.view,
            log_view=self.log_view,
            commit_max=max(state.commit_max, self.commit_max),
            checkpoint=checkpoint or state.checkpoint,
            view_headers=view_headers if view_headers is not None else state.view_headers,
        )
        self.superblock.update(new)

    # ------------------------------------------------------------------------------------------
    # Timeouts

    def _on_commit_heartbeat_timeout(self) -> None:
        if not self._is_primary_normal():
            self.commit_heartbeat_timeout.stop()
            return
        if self._primary_abdicating():
            return  # silence lets the backups time out and elect a primary they can reach
        header = self.journal.header_for_op(self.commit_max)
        self._broadcast(
            self._message(
                Command.COMMIT,
                op=self.op,
                commit=self.commit_max,
                context=header.checksum if header is not None else bytes(16),
                extra=self.checkpoint_op,
            )
        )

    def _on_prepare_timeout(self) -> None:
        if not self._is_primary_normal() or not self.pipeline:
            self.prepare_timeout.stop()
            return
        for entry in self.pipeline[:4]:
            if entry.message is None:
                continue
            for replica in range(self.replica_count):
                if replica != self.replica and replica not in entry.ok_from:
                    self._send(replica, entry.message)

    def _on_request_start_view_timeout(self) -> None:
        if self.status_name == Status.RECOVERING_HEAD:
            self.recovering_head_attempts += 1
            if self.recovering_head_attempts >= RECOVERING_HEAD_ATTEMPTS_MAX:
                # Nobody answered: the cluster may be in a lower view than ours (we kept timing
                # out while cut off) or leaderless. Call a newer view; our vote says our head is
                # uncertain, so it can never cut an op we may be hiding.
                self._transition_to_view_change(self.view + 1)
                return
        self._send_request_start_view()

    def _on_normal_heartbeat_timeout(self) -> None:
        if self.status_name != Status.NORMAL or self._is_primary():
            self.normal_heartbeat_timeout.stop()
            return
        self._transition_to_view_change(self.view + 1)

    def _on_view_change_status_timeout(self) -> None:
        if self.status_name != Status.VIEW_CHANGE:
            self.view_change_status_timeout.stop()
            return
        self._transition_to_view_change(self.view + 1)

    def _on_view_change_resend_timeout(self) -> None:
        if self.status_name != Status.VIEW_CHANGE:
            self.view_change_resend_timeout.stop()
            return
        self._broadcast(self._message(Command.START_VIEW_CHANGE))
        if self.dvc_sent and self._primary_index(self.view) != self.replica:
            self._send(self._primary_index(self.view), self._do_view_change_message())

    # ------------------------------------------------------------------------------------------
    # View change

    def _reset_quorums(self) -> None:
        if "stale-view-votes" in self.bugs:
            return
        self.svc_from = set()
        self.dvc_from = {}

    def _stop_normal_timeouts(self) -> None:
        self.commit_heartbeat_timeout.stop()
        self.prepare_timeout.stop()
        self.normal_heartbeat_timeout.stop()
        self.request_start_view_timeout.stop()

    def _transition_to_view_change(self, view: int, *, restarted: bool = False) -> None:
        assert view > self.view or (restarted and view == self.view), (view, self.view)
        # A replica in recovering_head may vote in a *newer* view: its do-view-change says its
        # head is uncertain, so the new primary never counts its silence above it as a nack.
        self.view = view
        self.status_name = Status.VIEW_CHANGE
        self._reset_quorums()
        self.dvc_sent = False
        self.pipeline = []
        self.request_queue = []
        self.request_queue_held = False
        self.inflight_requests = {}
        self.acked_op = 0
        self._stop_normal_timeouts()
        self.repair_timeout.stop()
        dvc_headers = tuple(h for h in self._dvc_headers() if h.command == Command.PREPARE)
        self._superblock_update(view_headers=dvc_headers or self.superblock.state.view_headers)
        self.view_change_status_timeout.start()
        self.view_change_resend_timeout.start()
        self.counters["view_changes"] += 1
        self.emit("view_change_started", view=view, log_view=self.log_view, op=self.op)
        self.svc_from.add(self.replica)
        self._broadcast(self._message(Command.START_VIEW_CHANGE))
        self._maybe_send_do_view_change()

    def _on_start_view_change(self, message: Message) -> None:
        header = message.header
        if self.status_name == Status.RECOVERING_HEAD and header.view <= self.view:
            self._drop("svc-recovering-head")
            return
        if header.view < self.view:
            self._drop("svc-old-view")
            return
        if header.view == self.view and self.status_name == Status.NORMAL:
            if self._is_primary():
                self._send(header.replica, self._start_view_message(nonce=0))  # it missed our start-view
            self._drop("svc-normal-same-view")
            return
        if header.view > self.view:
            self._transition_to_view_change(header.view)
        if "stale-view-votes" not in self.bugs:
            assert header.view == self.view
        self.svc_from.add(header.replica)
        self._maybe_send_do_view_change()

    def _maybe_send_do_view_change(self) -> None:
        if self.dvc_sent or len(self.svc_from) < self.quorums.view_change:
            return
        self.dvc_sent = True
        if self._primary_index(self.view) == self.replica:
            self._count_do_view_change(self._decode_do_view_change(self._do_view_change_message()))
        else:
            self._send(self._primary_index(self.view), self._do_view_change_message())

    def _dvc_range(self) -> range:
        low = min(self.commit_max, self.op)
        low = max(low, self.op - self.options.pipeline_max - 1, self.commit_min - 1, 0)
        low = min(low, self.op)
        return range(low, self.op + 1)

    def _dvc_headers(self) -> list[Header]:
        ops = self._dvc_range()
        held = [self.journal.header_for_op(op) for op in ops]
        stale = chain_contradicted(held, above=self.commit_min)
        return [
            header if header is not None and op not in stale else Header.reserved(self.cluster, op)
            for op, header in zip(ops, held, strict=True)
        ]

    def _do_view_change_message(self) -> Message:
        headers = self._dvc_headers()
        present: set[int] = set()
        nack: set[int] = set()
        for index, header in enumerate(headers):
            op = header.op
            held = header.command == Command.PREPARE and (
                op <= self.commit_min or self.journal.has_prepare(header)
            )
            if held:
                present.add(index)
            elif not self.journal.is_faulty(op):
                nack.add(index)
        return self._message(
            Command.DO_VIEW_CHANGE,
            body=encode_headers(headers),
            op=self.op,
            commit=self.commit_max,
            extra=self.log_view,
            request=self.commit_min,
            client=1 if self.head_uncertain else 0,
            parent=_bitset(present),
            context=_bitset(nack),
        )

    def _decode_do_view_change(self, message: Message) -> DoViewChange:
        header = message.header
        headers = decode_headers(message.body, cluster=self.cluster)
        if not headers or headers[-1].op != header.op:
            raise InvalidMessage("dvc-range")
        low = headers[0].op
        for index, h in enumerate(headers):
            if h.op != low + index:
                raise InvalidMessage("dvc-range")
            if h.command not in (Command.PREPARE, Command.RESERVED):
                raise InvalidMessage("dvc-header")
        if header.extra > header.view or header.commit < 0:
            raise InvalidMessage("dvc-log-view")
        present = _bits(header.parent)
        nack = _bits(header.context)
        return DoViewChange(
            replica=header.replica,
            view=header.view,
            log_view=header.extra,
            op=header.op,
            commit=header.commit,
            headers={h.op: (h if h.command == Command.PREPARE else None) for h in headers},
            present=frozenset(low + i for i in present if i < len(headers)),
            nack=frozenset(low + i for i in nack if i < len(headers)),
            head_uncertain=header.client == 1,
        )

    def _on_do_view_change(self, message: Message) -> None:
        header = message.header
        if self.status_name == Status.RECOVERING_HEAD and header.view <= self.view:
            self._drop("dvc-recovering-head")
            return
        if header.view < self.view:
            self._drop("dvc-old-view")
            return
        if self._primary_index(header.view) != self.replica:
            self._drop("dvc-not-primary")
            return
        if header.view == self.view and self.status_name == Status.NORMAL:
            self._send(header.replica, self._start_view_message(nonce=0))
            self._drop("dvc-already-normal")
            return
        try:
            dvc = self._decode_do_view_change(message)
        except InvalidMessage as error:
            self._drop(error.reason)
            return
        if header.view > self.view:
            self._transition_to_view_change(header.view)
        self._count_do_view_change(dvc)

    def _count_do_view_change(self, dvc: DoViewChange) -> None:
        if dvc.replica in self.dvc_from:
            return
        self.dvc_from[dvc.replica] = dvc
        if self.status_name != Status.VIEW_CHANGE or self.replica not in self.dvc_from:
            return
        if len(self.dvc_from) >= self.quorums.view_change:
            self._primary_start_view_from_dvcs()

    def _primary_start_view_from_dvcs(self) -> None:
        dvcs = list(self.dvc_from.values())
        assert len({d.replica for d in dvcs}) == len(dvcs)
        if "stale-view-votes" not in self.bugs:
            assert all(d.view == self.view for d in dvcs), [d.view for d in dvcs]
        chosen = choose_new_view_log(
            dvcs,
            replica_count=self.replica_count,
            nack_quorum=self.quorums.nack,
            highest_op_bug="dvc-highest-op" in self.bugs,
            check_consistency=not (self.bugs & {"dvc-highest-op", "stale-view-votes"}),
            in_hand=lambda op, checksum: self.journal.read_prepare(op, checksum) is not None,
        )
        if chosen is None:
            return  # wait for more votes (or stay stuck until a repair makes a copy available)
        assert chosen.head >= self.commit_min, (chosen.head, self.commit_min)
        if chosen.head > self.op_prepare_max:
            # Too far behind to hold the new log in our ring: forfeit; the view-change
            # timeout moves everyone to a view with another primary (docs/vr.md §1.5).
            self._drop("primary-lagging")
            return
        self._install_new_view_log(chosen.headers, head=chosen.head, commit=chosen.commit)

    def _install_new_view_log(self, headers: dict[int, Header], *, head: int, commit: int) -> None:
        for op in sorted(headers):
            if op > head or op <= self.commit_min:
                continue
            canonical = headers[op]
            if self.journal.header_for_op(op) != canonical:
                self.journal.set_header_as_dirty(canonical)
                self.prepares.pop(op, None)
        if self.journal.op_max() > head:
            self.journal.remove_entries_from(head + 1)
        for op in list(self.prepares):
            if op > head:
                del self.prepares[op]
        self.op = head
        self._advance_commit_max(commit)
        self.log_view = self.view
        self.status_name = Status.NORMAL
        self.head_uncertain = False
        self._reset_quorums()
        sv_headers = self._suffix_headers()
        self._superblock_update(view_headers=tuple(sv_headers))
        self.view_change_status_timeout.stop()
        self.view_change_resend_timeout.stop()
        self.pipeline = []
        for op in range(self.commit_max + 1, self.op + 1):
            h = self.journal.header_for_op(op)
            assert h is not None, f"new primary lacks header for op {op}"
            message = self._prepare_message(op, h.checksum)
            entry = PipelineEntry(h, message)
            if message is not None and self.journal.has_prepare(h):
                self._count_prepare_ok(entry, self.replica)
            self.pipeline.append(entry)
            self._track_inflight(message)
        self.heard_ticks = dict.fromkeys(range(self.replica_count), self.ticks)
        self.commit_heartbeat_timeout.start()
        self.repair_timeout.start()
        if self.pipeline:
            self.prepare_timeout.start()
        self.emit("view_change_completed", view=self.view, op=self.op, commit=self.commit_max)
        self.emit("became_primary", view=self.view)
        self._broadcast(self._start_view_message(nonce=0))
        self._primary_commit_pipeline()
        self._commit_journal()
        self._repair()

    def _suffix_headers(self) -> list[Header]:
        low = max(min(self.commit_max, self.op), self.op - self.options.pipeline_max - 1, 0)
        held = [self.journal.header_for_op(op) for op in range(low, self.op + 1)]
        stale = chain_contradicted(held, above=self.commit_min)
        return [h for h in held if h is not None and h.command == Command.PREPARE and h.op not in stale]

    def _start_view_message(self, *, nonce: int) -> Message:
        return self._message(
            Command.START_VIEW,
            body=encode_headers(self._suffix_headers()),
            op=self.op,
            commit=self.commit_max,
            extra=nonce,
            context=self._head_checksum(),
        )

    def _head_checksum(self) -> bytes:
        """The checksum of our head op, even when its header is gone (the executed checkpoint op)."""
        head = self.journal.header_for_op(self.op)
        if head is not None:
            return head.checksum
        if self.op == self.commit_min:
            return self.commit_min_checksum
        hint = self.head_checksum_hint
        return hint[1] if hint is not None and hint[0] == self.op else bytes(16)

    def _on_start_view(self, message: Message) -> None:
        header = message.header
        if header.replica != self._primary_index(header.view):
            self._drop("sv-not-from-primary")
            return
        if self.status_name == Status.RECOVERING_HEAD:
            if header.view <= self.view and header.extra != self.nonce:
                self._drop("sv-not-proof-of-head")
                return
        elif header.view < self.view:
            self._drop("sv-old-view")
            return
        try:
            headers = decode_headers(message.body, cluster=self.cluster)
        except InvalidMessage as error:
            self._drop(error.reason)
            return
        if any(h.command != Command.PREPARE or h.op > header.op or h.view > header.view for h in headers):
            self._drop("sv-invalid")
            return
        if (not headers or headers[-1].op != header.op) and header.context == bytes(16):
            self._drop("sv-invalid")  # neither the head's header nor its checksum: nothing to chain from
            return
        if header.commit > header.op:
            self._drop("sv-invalid")
            return
        transition = header.view > self.view or self.status_name != Status.NORMAL or self.log_view < self.view
        if transition:
            self._install_start_view(header, headers)
        else:
            self._catch_up_from_start_view(header, headers)

    def _install_start_view(self, header: Header, headers: list[Header]) -> None:
        if header.op < self.commit_min:
            self._drop("sv-behind-commit")
            return
        if header.op > self.op_prepare_max and self.commit_min > self.checkpoint_op:
            self._maybe_checkpoint(force=True)  # what we executed may be enough to make room
        if header.op > self.op_prepare_max:
            # Our ring cannot hold the new view's log yet. Installing part of it while claiming
            # log_view = view would let our stale, short log win a later view change (docs/vr.md bug #14;
            # found by seed 7049); cutting our own entries would turn them into nacks. So do
            # neither: take the primary's checkpoint first (state sync), then ask again.
            self._drop("sv-beyond-checkpoint")
            if self._is_primary_normal() and header.view > self.view:
                self._transition_to_view_change(header.view)  # a deposed primary stops leading first
            self._request_sync(header.replica)
            return
        head = header.op
        for h in headers:
            if h.op <= self.commit_min:
                continue
            if self.journal.header_for_op(h.op) != h:
                self.journal.set_header_as_dirty(h)
                self.prepares.pop(h.op, None)
        if self.journal.op_max() > head:
            self.journal.remove_entries_from(head + 1)
        for op in list(self.prepares):
            if op > head:
                del self.prepares[op]
        self.view = header.view
        self.log_view = header.view
        self.op = head
        self.head_checksum_hint = (head, header.context) if head == header.op else None
        self._advance_commit_max(header.commit)
        was = self.status_name
        self.status_name = Status.NORMAL
        self.head_uncertain = False
        self._reset_quorums()
        self.pipeline = []
        self.request_queue = []
        self.request_queue_held = False
        self.inflight_requests = {}
        self.acked_op = 0
        self._superblock_update(view_headers=tuple(h for h in headers if h.op <= head))
        self.view_change_status_timeout.stop()
        self.view_change_resend_timeout.stop()
        self.request_start_view_timeout.stop()
        self.normal_heartbeat_timeout.start()
        self.repair_timeout.start()
        if was == Status.VIEW_CHANGE:
            self.emit("view_change_completed", view=self.view, op=self.op, commit=self.commit_max)
        else:
            self.emit(
                "view_change_completed", view=self.view, op=self.op, commit=self.commit_max, status_was=was
            )
        self._commit_journal()
        self._send_prepare_oks()
        self._repair()

    def _catch_up_from_start_view(self, header: Header, headers: list[Header]) -> None:
        """Same view, already normal: learn the primary's head and commit without truncating."""
        if self._is_primary():
            self._drop("sv-to-primary")
            return
        self.normal_heartbeat_timeout.reset()
        for h in headers:
            if h.op <= self.commit_min:
                continue
            if h.op > self.op:
                if h.op > self.op_prepare_max:
                    continue
                self.journal.set_header_as_dirty(h)
        if header.op > self.op and header.op <= self.op_prepare_max:
            self.op = header.op
            self.head_checksum_hint = (header.op, header.context)
        if header.op > self.op_prepare_max:
            self._request_sync(header.replica)
        self._advance_commit_max(header.commit)
        self._commit_journal()
        self._repair()

    def _transition_to_normal_backup(self) -> None:
        self.status_name = Status.NORMAL
        self.normal_heartbeat_timeout.start()
        self.repair_timeout.start()
        self._send_request_start_view()

    def _transition_to_solo_primary(self) -> None:
        self.view += 1
        self.log_view = self.view
        self.status_name = Status.NORMAL
        self._superblock_update(
            view_headers=tuple(self._suffix_headers()) or self.superblock.state.view_headers
        )
        self.pipeline = []
        for op in range(self.commit_max + 1, self.op + 1):
            h = self.journal.header_for_op(op)
            if h is None:
                break
            entry = PipelineEntry(h, self._prepare_message(op, h.checksum))
            self._count_prepare_ok(entry, self.replica)
            self.pipeline.append(entry)
        self.commit_heartbeat_timeout.start()
        self.emit("became_primary", view=self.view)
        self._primary_commit_pipeline()

    def _send_request_start_view(self, *, to: int | None = None) -> None:
        if self.status_name == Status.RECOVERING_HEAD and to is None:
            # We do not know who leads now: ask everyone; only a normal primary answers.
            self._broadcast(self._message(Command.REQUEST_START_VIEW, extra=self.nonce))
            return
        target = self._primary_index(self.view) if to is None else to
        if target == self.replica:
            return
        self._send(target, self._message(Command.REQUEST_START_VIEW, extra=self.nonce))

    def _on_request_start_view(self, message: Message) -> None:
        if not self._is_primary_normal() or message.header.view > self.view:
            self._drop("rsv-not-primary")
            return
        self._send(message.header.replica, self._start_view_message(nonce=message.header.extra))

    # ------------------------------------------------------------------------------------------
    # Repair and state transfer

    def _repair(self) -> None:
        if self.status_name != Status.NORMAL:
            return
        if not self._is_primary() and self.commit_max > self.op:
            self._send_request_start_view()
        expected = self._chain_expected()
        requests = 0
        for op in range(self.op, self.commit_min, -1):
            want = expected.get(op)
            if want is None:
                self._send_request_headers(self.commit_min + 1, op)
                break
            header = self.journal.header_for_op(op)
            if header is None or header.checksum != want or not self.journal.has_prepare(header):
                cached = self.prepares.get(op)
                if cached is not None and cached.header.checksum == want:
                    continue
                local = self._prepare_message(op, want) if self.journal.holds_intact(op, want) else None
                if local is not None:
                    self._on_repair(local)  # our own intact copy: the chain vouches for it
                    continue
                if requests < self.options.repair_prepares_max:
                    requests += 1
                    self._send(
                        self._repair_target(),
                        self._message(Command.REQUEST_PREPARE, op=op, context=want),
                    )
                if header is None or header.checksum != want:
                    self._send_request_headers(self.commit_min + 1, op - 1)
                    break

    def _repair_target(self) -> int:
        primary = self._primary_index(self.view)
        if primary != self.replica and self.rng.random() < 0.5:
            return primary
        others = [r for r in range(self.replica_count) if r != self.replica]
        return self.rng.choice(others)

    def _send_request_headers(self, op_min: int, op_max: int) -> None:
        if op_max < op_min:
            return
        self._send(self._repair_target(), self._message(Command.REQUEST_HEADERS, op=op_max, commit=op_min))

    def _on_request_headers(self, message: Message) -> None:
        op_max = min(message.header.op, self.op)
        op_min = max(message.header.commit, op_max - self.options.headers_reply_max + 1, 0)
        headers = []
        for op in range(op_min, op_max + 1):
            h = self.journal.header_for_op(op)
            if h is not None and h.command == Command.PREPARE:
                headers.append(h)
        if headers:
            self._send(message.header.replica, self._message(Command.HEADERS, body=encode_headers(headers)))

    def _on_headers(self, message: Message) -> None:
        if self.status_name != Status.NORMAL:
            self._drop("headers-not-normal")
            return
        try:
            received = decode_headers(message.body, cluster=self.cluster)
        except InvalidMessage as error:
            self._drop(error.reason)
            return
        by_op = {h.op: h for h in received if h.command == Command.PREPARE}
        if not by_op:
            return
        expected = self._chain_expected()
        if self.op not in expected:
            return
        want = expected[self.op]
        for op in range(self.op, self.commit_min, -1):
            current = self.journal.header_for_op(op)
            if current is not None and current.checksum == want:
                want = current.parent
                continue
            candidate = by_op.get(op)
            if candidate is None or candidate.checksum != want:
                break
            if op > self.op_prepare_max:
                break
            self.journal.set_header_as_dirty(candidate)
            self.prepares.pop(op, None)
            want = candidate.parent

    def _on_request_prepare(self, message: Message) -> None:
        op = message.header.op
        wanted = message.header.context
        prepare = self._prepare_message(op, wanted)
        if prepare is None:
            return  # never nack: we may hold it but have lost it (faulty) — say nothing
        self._send(message.header.replica, prepare)

    def _request_sync(self, primary: int) -> None:
        """Ask for the primary's checkpoint, or for the next piece of the one arriving."""
        transfer = self.sync_transfer
        if transfer is not None and transfer.op > self.commit_min:
            message = self._message(
                Command.REQUEST_SYNC,
                op=self.commit_min,
                context=transfer.checksum,
                request=len(transfer.data),
            )
        else:
            message = self._message(Command.REQUEST_SYNC, op=self.commit_min)
        self._send(primary, message)

    def _on_request_sync(self, message: Message) -> None:
        """Send one piece of our checkpoint: from the offset asked for, if it is still this checkpoint."""
        header = message.header
        if not self._is_primary_normal():
            self._drop("sync-not-primary")
            return
        if self.checkpoint_op <= header.op:
            self._drop("sync-not-ahead")
            return
        data = self.checkpoint_data
        offset = header.request if header.context == self.checkpoint_checksum else 0
        if offset > len(data):
            self._drop("sync-offset")
            return
        chunk_bytes = min(self.options.sync_chunk_bytes, MESSAGE_SIZE_MAX - HEADER_SIZE)
        self._send(
            header.replica,
            self._message(
                Command.SYNC,
                body=data[offset : offset + chunk_bytes],
                op=self.checkpoint_op,
                commit=self.commit_max,
                context=self.checkpoint_checksum,
                request=offset,
                extra=len(data),
            ),
        )

    def _on_sync(self, message: Message) -> None:
        """One piece of a checkpoint; once all of it is here and its checksum holds, install it."""
        header = message.header
        # A checkpoint holds only committed state, so any primary at our view or later may give
        # it, whatever our status (a replica too far behind to install a start-view needs it).
        if header.view < self.view or header.replica != self._primary_index(header.view):
            self._drop("sync-ignored")
            return
        if self.status_name == Status.RECOVERING_HEAD or self._is_primary_normal():
            self._drop("sync-ignored")  # a (perhaps deposed) primary learns the new view first
            return
        if header.op <= self.commit_min:
            self._drop("sync-stale")
            return
        if header.extra > self.layout.snapshot_size_max:
            self._drop("sync-invalid")
            return
        transfer = self.sync_transfer
        if header.request == 0 and (
            transfer is None or (transfer.op, transfer.checksum) != (header.op, header.context)
        ):
            transfer = self.sync_transfer = SyncTransfer(
                op=header.op, checksum=header.context, size=header.extra
            )
        if (
            transfer is None
            or (transfer.op, transfer.checksum, transfer.size) != (header.op, header.context, header.extra)
            or header.request != len(transfer.data)
            or len(transfer.data) + len(message.body) > transfer.size
            or (not message.body and len(transfer.data) < transfer.size)
        ):
            self._drop("sync-out-of-order")  # a duplicate, a late piece, or another checkpoint's
            return
        transfer.data += message.body
        if len(transfer.data) < transfer.size:
            self._request_sync(header.replica)
            return
        self.sync_transfer = None
        data = bytes(transfer.data)
        if checksum(data) != transfer.checksum:
            self._drop("sync-invalid")
            return
        try:
            op, op_checksum, machine = decode_checkpoint(data, self.options.clients_max)
        except (ValueError, KeyError, json.JSONDecodeError, UnicodeDecodeError):
            self._drop("sync-invalid")
            return
        if op != header.op:
            self._drop("sync-invalid")
            return
        self.machine = machine
        self.commit_min = op
        self.commit_min_checksum = op_checksum
        self._state_jumped(op)
        self._advance_commit_max(max(op, header.commit))
        for stale in [o for o in self.prepares if o <= op]:
            del self.prepares[stale]
        if self.op < op:
            self.op = op
        ref = self.snapshots.write(op, data, checkpoint=self.superblock.state.checkpoint)
        self._checkpoint_installed(ref, data)
        self.acked_op = 0
        self.counters["state_transfers"] += 1
        self.emit("state_transfer", op=op, view=self.view, size_bytes=len(data))
        self._send_request_start_view(to=header.replica)

    # ------------------------------------------------------------------------------------------
    # Invariants

    def _invariants(self) -> None:
        assert self.commit_min <= self.commit_max, (self.commit_min, self.commit_max)
        assert self.commit_min <= self.op or self.status_name == Status.RECOVERING_HEAD, (
            self.commit_min,
            self.op,
        )
        assert self.log_view <= self.view, (self.log_view, self.view)
        assert self.checkpoint_op <= self.commit_min, (self.checkpoint_op, self.commit_min)
        if self._is_primary_normal():
            assert len(self.pipeline) <= self.options.pipeline_max or self.pipeline[0].header.view < self.view
            for index, entry in enumerate(self.pipeline):
                assert entry.header.op == self.commit_max + 1 + index, (entry.header.op, self.commit_max)
                assert len(entry.ok_from) <= self.replica_count

    _handlers: ClassVar[dict[Command, Callable[[Replica, Message], None]]] = {
        Command.PREPARE: _on_prepare,
        Command.PREPARE_OK: _on_prepare_ok,
        Command.COMMIT: _on_commit,
        Command.START_VIEW_CHANGE: _on_start_view_change,
        Command.DO_VIEW_CHANGE: _on_do_view_change,
        Command.START_VIEW: _on_start_view,
        Command.REQUEST_START_VIEW: _on_request_start_view,
        Command.REQUEST_HEADERS: _on_request_headers,
        Command.HEADERS: _on_headers,
        Command.REQUEST_PREPARE: _on_request_prepare,
        Command.REQUEST_SYNC: _on_request_sync,
        Command.SYNC: _on_sync,
    }


def chain_contradicted(headers: Sequence[Header | None], *, above: int) -> set[int]:
    """Ops above ``above`` whose header the hash chain from the head contradicts.

    ``headers`` are consecutive ops, ascending. Walking down from the head, each header names
    its predecessor's checksum (``parent``); a held header with another checksum is older than
    the log it sits in: an entry of an earlier view that a view change replaced while this
    replica held no copy of the replacement, kept because the new log named no header for
    that op. Such a header must not reach a vote, a start-view or the superblock's view
    headers, where it would stand beside the chain as a second version of a committed op
    (sim seed 1352). A gap ends what the chain can tell until the next held header.
    """
    stale: set[int] = set()
    want: bytes | None = None
    for header in reversed(headers):
        if header is None or header.command != Command.PREPARE:
            want = None
            continue
        if want is not None and header.checksum != want and header.op > above:
            stale.add(header.op)
            want = None
            continue
        want = header.parent
    return stale


@dataclass(frozen=True, slots=True)
class NewViewLog:
    """What a new primary decided from a quorum of do-view-change votes."""

    head: int
    commit: int
    headers: dict[int, Header]  # canonical headers (may extend beyond head; ignored there)


def choose_new_view_log(
    dvcs: list[DoViewChange],
    *,
    replica_count: int,
    nack_quorum: int,
    highest_op_bug: bool = False,
    check_consistency: bool = True,
    in_hand: Callable[[int, bytes], bool] | None = None,
) -> NewViewLog | None:
    """The new view's log from do-view-change votes (docs/vr.md §1.5 rules 4-5).

    Canonical votes are those with the highest log_view (docs/vr.md bug #5: never simply the
    highest op); the head is the highest op among them. Above the highest commit any vote
    knows, each op is kept unless a nack quorum proves it was never replicated widely
    enough to commit (then the log is cut there: if op n was not committed, no later op
    was). An op nobody in hand holds a copy of, without such proof, needs more votes:
    returns None. A vote whose head is uncertain (recovering_head) never nacks by silence.

    ``in_hand(op, checksum)`` says whether the new primary itself holds that prepare intact.
    It counts as a copy even when its own vote could not say so: a torn header sector leaves
    the prepare intact with no header belief (faulty), and a vote names only what it believes.
    A copy never cuts anything, so counting one can only keep an op, never lose one.
    """
    assert dvcs
    if highest_op_bug:
        canonical = [max(dvcs, key=lambda d: (d.op, d.log_view))]
    else:
        log_view_max = max(d.log_view for d in dvcs)
        canonical = [d for d in dvcs if d.log_view == log_view_max]
    if all(d.head_uncertain for d in canonical) and len(dvcs) < replica_count:
        return None  # the newest log's head may hide committed ops: hear from everyone first
    head_canonical = max(d.op for d in canonical)
    commit = max(d.commit for d in dvcs)
    headers: dict[int, Header] = {}
    for d in canonical:
        for op, h in d.headers.items():
            if h is None:
                continue
            if check_consistency:
                assert op not in headers or headers[op].checksum == h.checksum, (op, d.replica)
            headers.setdefault(op, h)
    head = head_canonical
    for op in range(commit + 1, head_canonical + 1):
        canonical_header = headers.get(op)
        nacks = 0
        copies = 0
        for d in dvcs:
            entry = d.headers.get(op)
            if (
                (op > d.op and not d.head_uncertain)
                or op in d.nack
                or (
                    canonical_header is not None
                    and d.log_view < canonical_header.view
                    and op not in d.present
                )
            ):
                # The last rule: a replica acks only in a view its log is normal in (log_view ==
                # view), and log_view never goes down, so one whose log_view is below the view
                # this op was prepared in never acked it, head certain or not.
                nacks += 1
            elif canonical_header is not None and entry is not None:
                if entry.checksum != canonical_header.checksum:
                    nacks += 1
                elif op in d.present:
                    copies += 1
        if nacks >= nack_quorum:
            head = op - 1
            break
        if copies == 0 and canonical_header is not None and in_hand is not None:
            copies = int(in_hand(op, canonical_header.checksum))
        if canonical_header is None or copies == 0:
            if len(dvcs) < replica_count:
                return None
            if canonical_header is None:
                head = op - 1
                break
            return None  # every replica answered and nobody has a copy: the next view's primary may
    return NewViewLog(head=max(head, commit), commit=commit, headers=headers)


def _recovery_summary(recovery: object) -> dict[str, Any]:
    """A JSON-able summary of the journal's recovery report (whatever fields it has)."""
    if dataclasses.is_dataclass(recovery) and not isinstance(recovery, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(recovery):
            value = getattr(recovery, f.name)
            if isinstance(value, int | str | bool):
                out[f.name] = value
            elif isinstance(value, dict):
                out[f.name] = {str(k): v for k, v in value.items() if isinstance(v, int | str | bool)}
            elif isinstance(value, list | tuple | set | frozenset):
                out[f.name] = len(value)
        return out
    return {}
