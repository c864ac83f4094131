"""An in-process cluster: real ``Replica`` objects on a simulated network and simulated disks.

Everything is driven by one ``random.Random``: message delays and losses, partitions,
when each replica begins a group commit and when its completion is delivered (the
replica keeps taking messages and ticks meanwhile, as a node does while its I/O thread
syncs; a crash with a flush in flight stops it part-way or before it started, and the
completion never arrives), crashes and restarts,
corruption of WAL entries under a fault atlas, and the clients' requests. The
``StateChecker`` sees every execution and every reply.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from vr.layout import Layout
from vr.message import (
    CLIENT_REPLICA,
    HEADER_SIZE,
    SECTOR_SIZE,
    Command,
    InvalidMessage,
    Message,
    Operation,
    decode_header,
    make_message,
)
from vr.replica import Replica, ReplicaFlush, ReplicaOptions, Status, format_data_file
from vr.state_machine import StateMachine
from vr.testing.history import ClientHistory
from vr.testing.network import Network, NetworkOptions
from vr.testing.state_checker import ObservedReply, StateChecker
from vr.testing.storage import PowerCut, SimStorage, WalSectors, wal_sectors

SIM_LAYOUT = Layout(slot_count=32, prepare_size_max=8192, snapshot_size_max=64 * 1024, view_headers_max=16)
SIM_OPTIONS = ReplicaOptions(pipeline_max=4, sync_chunk_bytes=512)  # state syncs come in pieces
KEYS = ("x", "y", "z")  # registers: read, write, cas
LIST_KEYS = {key: f"{key}-list" for key in KEYS}  # lists: append, read


@dataclass(slots=True)
class WorkloadValues:
    """Unique values for a seed's writes and appends, and each register's latest ones (for cas)."""

    next_value: int = 0
    latest: dict[str, list[int]] = field(default_factory=dict)

    def fresh(self, register: str | None) -> int:
        self.next_value += 1
        if register is not None:
            written = self.latest.setdefault(register, [])
            written.append(self.next_value)
            del written[:-3]
        return self.next_value

    def cas_choices(self, register: str) -> list[int | None]:
        return [None, *self.latest.get(register, [])]


@dataclass(frozen=True, slots=True)
class FaultOptions:
    crash_probability: float = 0.0  # per tick, per replica
    power_loss_probability: float = 0.5  # share of crashes that drop unsynced writes
    restart_after_ticks_max: int = 200
    corrupt_probability: float = 0.0  # per tick: corrupt one committed WAL entry (atlas-limited)
    flush_delay_ticks_max: int = 2  # a flush completes 0..this many ticks after it begins
    clock_jump_probability: float = 0.0  # per tick: a replica's wall clock jumps back (lease bug)
    crash_max_down: int | None = None  # replicas down at once (default f: a quorum stays up)
    read_error_probability: float = 0.0  # per tick: EIO on one committed prepare slot (atlas-limited)
    read_error_ticks: int = 100  # how long an injected read error window lasts
    power_cut_probability: float = 0.0  # per flush: the power goes at its 1st or 2nd sync
    misdirect_probability: float = 0.0  # per tick: a replica's next prepare lands in another slot
    superblock_corrupt_probability: float = 0.0  # per tick: rot one superblock copy of one replica


@dataclass(slots=True)
class SimClient:
    """One client: one outstanding request, the same bytes retried, first to the primary then to all."""

    endpoint: int
    client_id: int
    rng: random.Random
    replica_count: int
    cluster: int
    request_number: int = 0
    message: Message | None = None
    key: str = ""
    operation: int = 0
    f: str = ""  # the history's name for the operation
    value: object = None  # the history's value of the invocation
    invoked_tick: int = 0
    floor_op: int = 0
    view: int = 0
    timeout_ticks: int = 40
    next_send_tick: int = 0
    attempts: int = 0
    completed: int = 0

    def new_request(self, now: int, floor_op: int, values: WorkloadValues) -> None:
        """Draw the next request: registers take read/write/cas, each key's list twin append/read.

        The draws from the client's stream are the same whatever they turn into, so the
        fault schedule of a seed does not depend on what the workload does with them.
        Written and appended values are unique across the seed (the checkers name each read's
        writer by its value); a cas expects nil or one of the key's latest values.
        """
        self.request_number += 1
        key = self.rng.choice(KEYS)
        kind = self.rng.choice(["read", "write", "write", "cas", "append"])
        draw = self.rng.randrange(100)
        body: dict[str, object]
        if kind == "read":
            self.key = key if draw % 2 == 0 else LIST_KEYS[key]
            self.operation, body, self.value = Operation.READ, {"key": self.key}, None
        elif kind == "write":
            self.key, value = key, values.fresh(key)
            self.operation, body, self.value = Operation.WRITE, {"key": key, "value": value}, value
        elif kind == "cas":
            choices = values.cas_choices(key)
            old, new = choices[self.rng.randrange(100) % len(choices)], values.fresh(key)
            self.key = key
            self.operation, body, self.value = Operation.CAS, {"key": key, "old": old, "new": new}, [old, new]
        else:
            self.key, value = LIST_KEYS[key], values.fresh(None)
            self.operation, body, self.value = Operation.APPEND, {"key": self.key, "value": value}, value
        self.f = kind
        self.message = make_message(
            command=Command.REQUEST,
            cluster=self.cluster,
            body=json.dumps(body).encode(),
            client=self.client_id,
            request=self.request_number,
            operation=self.operation,
            replica=CLIENT_REPLICA,
        )
        self.invoked_tick = now
        self.floor_op = floor_op
        self.attempts = 0
        self.next_send_tick = now

    def targets(self) -> list[int]:
        self.attempts += 1
        if self.attempts == 1:
            return [self.view % self.replica_count]
        return list(range(self.replica_count))


class SimCluster:
    """Replicas, disks, network, clients and the checker, advanced one tick at a time."""

    def __init__(
        self,
        *,
        seed: int,
        replica_count: int = 3,
        client_count: int = 2,
        network: NetworkOptions,
        faults: FaultOptions,
        bugs: frozenset[str] = frozenset(),
        cluster: int = 1,
        log: Callable[[str], None] | None = None,
        layout: Layout = SIM_LAYOUT,
        options: ReplicaOptions = SIM_OPTIONS,
    ) -> None:
        self.layout = layout
        self.options = options
        self.rng = random.Random(seed)
        self.seed = seed
        self.replica_count = replica_count
        self.cluster = cluster
        self.bugs = bugs
        self.faults = faults
        self.log = log
        self.now = 0
        self.network = Network(
            replica_count=replica_count, options=network, rng=random.Random(self.rng.getrandbits(64))
        )
        self.checker = StateChecker(cluster=cluster, model=StateMachine(options.clients_max))
        self.storages = [
            SimStorage(layout.size_bytes, rng=random.Random(self.rng.getrandbits(64)))
            for _ in range(replica_count)
        ]
        for i, storage in enumerate(self.storages):
            format_data_file(storage, cluster=cluster, replica=i, replica_count=replica_count, layout=layout)
        self.replicas: list[Replica | None] = [None] * replica_count
        self.events: list[tuple[int, int, str, dict[str, object]]] = []
        self.down_until: list[int] = [0] * replica_count
        # Per replica: the group commit begun and the tick its completion is delivered.
        self.flushing: list[tuple[ReplicaFlush, int] | None] = [None] * replica_count
        self.clock_offset_ns: list[int] = [0] * replica_count
        # Fault atlas: for each WAL slot, the one replica whose copy may be corrupted.
        self.atlas = [self.rng.randrange(replica_count) for _ in range(layout.slot_count)]
        self.corrupted: set[tuple[int, int]] = set()  # (replica, op)
        self.stats: dict[str, int] = {
            "crashes": 0,
            "restarts": 0,
            "corruptions": 0,
            "clock_jumps": 0,
            "read_errors": 0,
            "power_cuts": 0,
            "misdirects": 0,
            "superblock_corruptions": 0,
            "evictions": 0,
        }
        self.read_errors_until: list[int] = [0] * replica_count
        self.superblock_rotten: list[bool] = [False] * replica_count  # a copy rotted since the last open
        for i in range(replica_count):
            self._open(i)
        self.clients = [
            SimClient(
                endpoint=replica_count + k,
                client_id=self.rng.getrandbits(63) | 1,
                rng=random.Random(self.rng.getrandbits(64)),
                replica_count=replica_count,
                cluster=cluster,
            )
            for k in range(client_count)
        ]
        self.requests_issued = 0
        self.requests_max = 0
        self.values = WorkloadValues()
        self.history = ClientHistory(list_keys=frozenset(LIST_KEYS.values()))
        self.faults_enabled = True

    # Replicas --------------------------------------------------------------------------------

    def _open(self, i: int) -> None:
        replica = Replica.open(
            storage=self.storages[i],
            layout=self.layout,
            bus=_SimBus(self, i),
            cluster=self.cluster,
            replica=i,
            replica_count=self.replica_count,
            seed=self.rng.getrandbits(64),
            bugs=self.bugs,
            wall_clock_ns=functools.partial(self.wall_clock_ns, i),
            emit=functools.partial(self._emit, i),
            options=self.options,
        )
        replica.commit_hook = self.checker.on_commit
        self.replicas[i] = replica
        self.checker.observe_view(i, replica.view, replica.log_view)

    def _emit(self, replica: int, kind: str, **fields: object) -> None:
        """The replicas' event sink: kept in memory (tests check which recovery paths ran)."""
        self.events.append((self.now, replica, kind, fields))

    def wall_clock_ns(self, i: int) -> int:
        """Replica i's wall clock: simulated time plus its (possibly jumped) offset."""
        return self.now * 10_000_000 + self.clock_offset_ns[i]

    def crash(self, i: int, *, power_loss: bool) -> None:
        replica = self.replicas[i]
        assert replica is not None
        self.replicas[i] = None
        in_flight = self.flushing[i]
        self.flushing[i] = None
        if in_flight is not None:
            # The I/O thread dies with the process: the flush stops after a seeded number of its
            # writes and syncs (maybe none), in order, and its completion never arrives.
            flush = in_flight[0].journal
            io_max = self.rng.randint(0, flush.io_count)
            flush.run(self.storages[i], io_max=io_max)
            self._trace(f"crash-in-flush replica={i} io_done={io_max}/{flush.io_count}")
        self.storages[i].crash(power_loss=power_loss)
        self.stats["crashes"] += 1
        self.down_until[i] = self.now + self.rng.randint(1, self.faults.restart_after_ticks_max)
        self._trace(f"crash replica={i} power_loss={power_loss}")

    def restart(self, i: int) -> None:
        self.superblock_rotten[i] = False  # opening rewrites every copy that lost the state
        self.stats["restarts"] += 1
        self._trace(f"restart replica={i}")
        self._open(i)

    def corrupt_one(self) -> None:
        """Flip a bit in one committed WAL entry on the one replica the atlas allows for that slot."""
        alive = [r for r in self.replicas if r is not None]
        if not alive:
            return
        commit = min(r.commit_min for r in alive)
        low = max(1, commit - self.layout.slot_count + 1)
        if commit < low:
            return
        op = self.rng.randint(low, commit)
        slot = op % self.layout.slot_count
        target = self.atlas[slot]
        sectors = wal_sectors(self.layout, op)
        in_prepare = self.rng.random() < 0.5
        if self._slot_holds_op_above(target, sectors, commit):
            return
        if in_prepare:
            self.storages[target].corrupt(sectors.prepare_offset, 256)
        else:
            self.storages[target].corrupt(sectors.header_offset, sectors.header_size)
        self.corrupted.add((target, op))
        self.stats["corruptions"] += 1
        self._trace(f"corrupt replica={target} op={op}")

    def _slot_holds_op_above(self, target: int, sectors: WalSectors, commit: int) -> bool:
        """Whether ``target``'s slot holds (by either durable header) an op above ``commit``.

        Ops are drawn at or below the lowest commit of the live replicas, but a replica a ring
        ahead of the slowest one holds a newer op in that slot: maybe uncommitted, maybe its
        only copy. Rotting that is not rotting a committed entry, which is all the fault
        atlas promises to stay within (docs/vr.md §3.1), so the fault is skipped.
        """
        storage = self.storages[target]
        start = sectors.header_offset - sectors.header_sector_offset
        raws = []
        for read in (storage.durable_bytes, storage.visible_bytes):  # durable, and what it reads now
            raws.append(read(sectors.prepare_offset, SECTOR_SIZE)[:HEADER_SIZE])
            raws.append(read(sectors.header_sector_offset, SECTOR_SIZE)[start : start + HEADER_SIZE])
        for raw in raws:
            try:
                header = decode_header(raw, cluster=self.cluster)
            except InvalidMessage:
                continue
            if header.command == Command.PREPARE and header.op > commit:
                return True
        return False

    def corrupt_superblock_one(self) -> None:
        """Rot one of a replica's superblock copies, at most one per replica between two opens.

        An update is durable once 3 of the 4 copies read back and an open needs 2 equal ones,
        so one rotten copy must never cost the replica its view or log_view (docs/vr.md §2.4).
        """
        target = self.rng.randrange(self.replica_count)
        if self.superblock_rotten[target]:
            return
        copy = self.rng.randrange(self.layout.superblock_copies)
        self.storages[target].corrupt(
            self.layout.superblock_copy_offset(copy), self.layout.superblock_copy_size
        )
        self.superblock_rotten[target] = True
        self.stats["superblock_corruptions"] += 1
        self._trace(f"corrupt-superblock replica={target} copy={copy}")

    def misdirect_one(self) -> None:
        """Send one replica's next prepare write to another slot (atlas-limited, both slots).

        The intended slot keeps its old bytes (a lost write the replica believes durable) and
        the slot it lands in loses its entry: so both slots must be ones whose copy on this
        replica the fault atlas allows to be bad.
        """
        alive = [i for i, r in enumerate(self.replicas) if r is not None]
        if not alive:
            return
        target = self.rng.choice(alive)
        replica = self.replicas[target]
        assert replica is not None
        intended = wal_sectors(self.layout, replica.op + 1)
        if self.atlas[intended.slot] != target:
            return
        others = [s for s in range(self.layout.slot_count) if s != intended.slot and self.atlas[s] == target]
        if not others:
            return
        landed = self.layout.prepare_offset(self.rng.choice(others))
        self.storages[target].misdirect_next_write(
            intended_offset=intended.prepare_offset, landed_offset=landed
        )
        self.stats["misdirects"] += 1
        self._trace(f"misdirect replica={target} op={replica.op + 1} slot={intended.slot} landed={landed}")

    def read_error_one(self) -> None:
        """Make reads of one committed prepare slot fail with EIO for a while (atlas replica only)."""
        alive = [r for r in self.replicas if r is not None]
        if not alive:
            return
        commit = min(r.commit_min for r in alive)
        if commit < 1:
            return
        op = self.rng.randint(max(1, commit - self.layout.slot_count + 1), commit)
        target = self.atlas[op % self.layout.slot_count]
        sectors = wal_sectors(self.layout, op)
        if self._slot_holds_op_above(target, sectors, commit):
            return
        self.storages[target].fail_reads(sectors.prepare_offset, sectors.prepare_size)
        self.read_errors_until[target] = self.now + self.faults.read_error_ticks
        self.stats["read_errors"] += 1
        self._trace(f"read-error replica={target} op={op}")

    # The loop --------------------------------------------------------------------------------

    def step(self) -> None:
        self.now += 1
        if self.faults_enabled:
            self.network.tick_partitions(primary=self._primary())
            self._inject_faults()
        for source, target, message in self.network.deliverable(self.now):
            if target < self.replica_count:
                replica = self.replicas[target]
                if replica is None:
                    continue
                replica.on_message(message)
            else:
                self._client_receive(self.clients[target - self.replica_count], source, message)
        for i, replica in enumerate(self.replicas):
            if replica is None:
                if self.now >= self.down_until[i]:
                    self.restart(i)
                continue
            replica.tick()
        for i in range(self.replica_count):
            self._flush_step(i)
        for client in self.clients:
            self._client_tick(client)
        for i, replica in enumerate(self.replicas):
            if replica is not None:
                self.checker.observe_view(i, replica.view, replica.log_view)

    def _flush_step(self, i: int) -> None:
        """The node's loop after a batch: deliver a due completion, then begin the next flush.

        As on a node, a flush begins as soon as none is in flight (what was staged meanwhile
        goes in it), and its completion arrives a seeded 0..``flush_delay_ticks_max`` ticks later.
        """
        for _ in range(3):  # complete, begin, and complete again at once when the delay drawn is 0
            replica = self.replicas[i]
            if replica is None:
                return
            in_flight = self.flushing[i]
            if in_flight is not None:
                flush, due = in_flight
                if flush is not replica.flushing:
                    self.flushing[i] = None  # completed by a direct replica.flush() (tests)
                elif due > self.now:
                    return
                else:
                    self.flushing[i] = None
                    self._complete_flush(i, replica, flush)
                    continue
            flush = replica.begin_flush()
            if flush is None:
                return
            due = self.now + self.rng.randint(0, self.faults.flush_delay_ticks_max)
            self.flushing[i] = (flush, due)

    def _complete_flush(self, i: int, replica: Replica, flush: ReplicaFlush) -> None:
        """Run the flush's I/O and deliver its completion, unless the power goes at one of its syncs.

        Between inputs nothing is in flight but an unfinished flush, so this (and a crash
        during a flush, see ``crash``) is how torn prepares and torn header sectors reach
        recovery. Power cuts respect ``crash_max_down`` like crashes.
        """
        storage = self.storages[i]
        armed = (
            self.faults_enabled
            and self.faults.power_cut_probability > 0
            and self.rng.random() < self.faults.power_cut_probability
            and self._down_count() < self._down_max()
        )
        if armed:
            storage.arm_power_cut(after_syncs=self.rng.randint(1, 2))
        try:
            done = flush.journal.run(storage)
        except PowerCut:
            self.stats["power_cuts"] += 1
            self._trace(f"power-cut replica={i} in_flight={storage.in_flight_write_count}")
            self.flushing[i] = None
            self.crash(i, power_loss=True)
            return
        finally:
            storage.disarm_power_cut()
        replica.complete_flush(flush, done)

    def _primary(self) -> int | None:
        """The replica leading the highest view any up replica is normal in (None if none is)."""
        leaders = [
            (r.view, i)
            for i, r in enumerate(self.replicas)
            if r is not None and r.status_name == Status.NORMAL and r.view % self.replica_count == i
        ]
        return max(leaders)[1] if leaders else None

    def _down_count(self) -> int:
        return sum(1 for r in self.replicas if r is None)

    def _down_max(self) -> int:
        f = (self.replica_count - 1) // 2
        return f if self.faults.crash_max_down is None else self.faults.crash_max_down

    def _inject_faults(self) -> None:
        for i, replica in enumerate(self.replicas):
            if replica is None or self.rng.random() >= self.faults.crash_probability:
                continue
            if self._down_count() >= self._down_max():
                continue
            self.crash(i, power_loss=self.rng.random() < self.faults.power_loss_probability)
        if self.faults.corrupt_probability and self.rng.random() < self.faults.corrupt_probability:
            self.corrupt_one()
        if self.faults.read_error_probability and self.rng.random() < self.faults.read_error_probability:
            self.read_error_one()
        if self.faults.misdirect_probability and self.rng.random() < self.faults.misdirect_probability:
            self.misdirect_one()
        if (
            self.faults.superblock_corrupt_probability
            and self.rng.random() < self.faults.superblock_corrupt_probability
        ):
            self.corrupt_superblock_one()
        for i, until in enumerate(self.read_errors_until):
            if until and self.now >= until:
                self.storages[i].clear_faults()
                self.read_errors_until[i] = 0
        if self.faults.clock_jump_probability and self.rng.random() < self.faults.clock_jump_probability:
            i = self.rng.randrange(self.replica_count)
            self.clock_offset_ns[i] -= self.rng.randint(1, 200) * 10_000_000
            self.stats["clock_jumps"] += 1

    def heal(self) -> None:
        """Liveness phase: no more faults, every link healed, every replica up."""
        self.faults_enabled = False
        self.network.heal()
        self.network.auto_partitions = False
        for storage in self.storages:
            storage.clear_faults()
        for i, replica in enumerate(self.replicas):
            if replica is None:
                self.restart(i)

    # Clients ---------------------------------------------------------------------------------

    def _client_tick(self, client: SimClient) -> None:
        if client.message is None:
            if self.requests_issued >= self.requests_max:
                return
            self.requests_issued += 1
            client.new_request(self.now, self.checker.max_replied_op, self.values)
            self.history.invoke(
                process=client.endpoint - self.replica_count,
                tick=self.now,
                f=client.f,
                key=client.key,
                value=client.value,
            )
        if self.now >= client.next_send_tick:
            assert client.message is not None
            for target in client.targets():
                self.network.send(source=client.endpoint, target=target, message=client.message, now=self.now)
            client.next_send_tick = self.now + client.timeout_ticks + self.rng.randrange(client.timeout_ticks)

    def _client_receive(self, client: SimClient, source: int, message: Message) -> None:
        header = message.header
        if (
            client.message is None
            or header.client != client.client_id
            or header.request != client.request_number
        ):
            return
        if header.command == Command.EVICTION and header.context == client.message.header.checksum:
            # Outcome unknown (it may have run before the eviction): start a new session.
            self.history.complete_unknown(
                process=client.endpoint - self.replica_count,
                tick=self.now,
                f=client.f,
                key=client.key,
                value=client.value,
                error="evicted",
            )
            client.client_id = client.rng.getrandbits(63) | 1
            client.request_number = 0
            client.message = None
            client.completed += 1
            self.stats["evictions"] += 1
            return
        if header.command == Command.REDIRECT:
            if header.view > client.view:
                client.view = header.view
                client.next_send_tick = self.now
                client.attempts = 0
            return
        if header.command != Command.REPLY or header.context != client.message.header.checksum:
            return
        client.view = max(client.view, header.view)
        local = header.extra == 1
        self.checker.on_reply(
            ObservedReply(
                client=client.client_id,
                request=client.request_number,
                op=header.op,
                local=local,
                body=message.body,
                invoked_tick=client.invoked_tick,
                replied_tick=self.now,
                floor_op=client.floor_op,
                key=client.key,
            )
        )
        self.history.complete_reply(
            process=client.endpoint - self.replica_count,
            tick=self.now,
            f=client.f,
            key=client.key,
            value=client.value,
            body=message.body,
            node=source,
        )
        client.message = None
        client.completed += 1

    def pending_requests(self) -> int:
        return sum(1 for c in self.clients if c.message is not None)

    def converged(self) -> bool:
        replicas = [r for r in self.replicas if r is not None]
        if len(replicas) != self.replica_count:
            return False
        if any(r.status_name != Status.NORMAL for r in replicas):
            return False
        views = {r.view for r in replicas}
        commits = {r.commit_min for r in replicas}
        return len(views) == 1 and len(commits) == 1 and all(r.commit_min == r.commit_max for r in replicas)

    def _trace(self, line: str) -> None:
        if self.log is not None:
            self.log(f"tick={self.now} {line}")


@dataclass(slots=True)
class _SimBus:
    cluster_sim: SimCluster
    replica: int
    sent: int = field(default=0)

    def send_to_replica(self, replica: int, message: Message) -> None:
        self.sent += 1
        self.cluster_sim.network.send(
            source=self.replica, target=replica, message=message, now=self.cluster_sim.now
        )

    def send_to_client(self, client: int, message: Message) -> None:
        self.sent += 1
        sim = self.cluster_sim
        for c in sim.clients:
            if c.client_id == client:
                sim.network.send(source=self.replica, target=c.endpoint, message=message, now=sim.now)
                return
