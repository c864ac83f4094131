"""One VR replica as a real process: ``python -m vr.node --id I --peers H:P,H:P,H:P --data DIR``.

The node owns everything the deterministic ``Replica`` must not touch: sockets
(``vr.bus``), the real data file (``vr.storage.FileStorage``), the clocks, signals,
logging and the event log. Its loop is the contract's (contracts §2): for each
batch of readable messages call ``on_message`` for each; ``tick()`` every ``tick_ms``
of monotonic time; then, unless a flush is in flight, ``begin_flush()`` (the journal's
group commit: its writes and fsyncs cover the whole batch) and hand it to the I/O
thread (``vr.flush_thread``); then write out the sends that were queued. The loop
does not wait for the disk: it keeps receiving and batching, and when the thread is
done the completion is delivered to the replica (``complete_flush``), which acks and
releases what waited for it. While the disk syncs fast the loop runs the flush
itself instead, right after writing out what waits for nothing (the thread
hand-off would cost more than the sync; vr/flush_thread.py says when). Acks and
replies never leave before the write they vouch for is durable.

A bad configuration ends the process before it touches the network, with exit 3
and one paragraph (what was wrong, the value, what is accepted). The one refusal
that matters most: a missing data file without ``--format``. A replica that lost
its disk and came back blank would nack ops it had acknowledged, and a view change
counting it could lose committed writes (docs/vr.md bug #10), so starting blank must
be an explicit operator decision.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from vr import bugs as bug_registry
from vr.bus import Address, Bus, BusLimits, Inbound, parse_peers
from vr.events import EventLog
from vr.flush_thread import FlushThread
from vr.journal import JournalError
from vr.layout import Layout
from vr.message import HEADER_SIZE, MESSAGE_SIZE_MAX, Command, make_message
from vr.replica import Replica, format_data_file
from vr.storage import FileStorage
from vr.superblock import SuperBlockError

logger = logging.getLogger("vr.node")

DATA_FILE_NAME = "replica.vr"
REPLICA_COUNT_MAX = 15  # replica indexes must stay below the client marker 255; 15 is plenty
TICK_MS_DEFAULT = 10
ZERO_FILL_CHUNK_BYTES = 1 << 20  # format writes the data file in 1 MiB chunks (see _preallocate)
EXIT_OK, EXIT_CRASH, EXIT_BAD_CONFIG = 0, 1, 3
SWITCH_INTERVAL_S = 0.0002  # see main(): lets the I/O thread take the GIL between its syscalls


class BadConfiguration(Exception):
    """A configuration the node refuses; the message is the one paragraph the operator sees."""


class StartupRefused(BadConfiguration):
    """The configuration parsed, but the machine refuses it (address in use, wrong-size data file)."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    replica: int
    peers: tuple[Address, ...]
    data_dir: str
    format: bool
    cluster: int
    log_path: str | None
    events_path: str | None
    bugs: frozenset[str]
    tick_ms: int
    seed: int
    limits: BusLimits = field(default_factory=BusLimits)
    event_loop: str = "auto"  # auto (uvloop when installed), asyncio or uvloop; see _event_loop_name

    @property
    def data_path(self) -> str:
        return os.path.join(self.data_dir, DATA_FILE_NAME)


# --- configuration ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise BadConfiguration(f"{message}. Run python -m vr.node --help for the accepted options.")


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m vr.node",
        description="Run one Viewstamped Replication replica (listens on peers[id]).",
    )
    parser.add_argument("--id", type=int, help="this replica's index into --peers")
    parser.add_argument("--peers", help="H:P,H:P,H:P: every replica's address, in index order")
    parser.add_argument("--data", help="directory holding this replica's data file (replica.vr)")
    parser.add_argument("--format", action="store_true", help="create a new, empty data file first")
    parser.add_argument("--cluster", type=int, default=0, help="cluster id (u64), the same on every node")
    parser.add_argument("--log", help="log file (default: stderr)")
    parser.add_argument("--events", help="JSON-lines event log file")
    parser.add_argument("--bug", action="append", default=[], help="switch on a planted bug (repeatable)")
    parser.add_argument("--tick-ms", type=int, default=TICK_MS_DEFAULT, help="logical tick period")
    parser.add_argument("--seed", type=int, default=None, help="seed of the replica's PRNG (default: random)")
    parser.add_argument("--list-bugs", action="store_true", help="describe the planted bugs and exit")
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="the event loop: auto (the default: uvloop's when it is installed, else asyncio's), asyncio's or uvloop's",
    )
    defaults = BusLimits()
    for flag, help_text in _LIMIT_FLAGS.items():
        parser.add_argument(flag, type=int, default=getattr(defaults, _limit_name(flag)), help=help_text)
    return parser


def _limit_name(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


# What the node gives the connections that reach it (vr.bus.BusLimits; contracts §3).
_LIMIT_FLAGS = {
    "--connections-max": "inbound connections in total (also kept under RLIMIT_NOFILE)",
    "--connections-per-host-max": "inbound connections from one source address",
    "--replica-connections-per-peer-max": "connections kept per identified replica",
    "--first-frame-timeout-ms": "close a connection that sends no complete frame within this time",
    "--frame-timeout-ms": "drop a frame that does not complete within this time",
    "--partial-frames-max-bytes": "bytes of unfinished frames held across all connections",
    "--drop-log-burst": "log lines per drop or close reason per interval",
    "--drop-log-interval-ms": "interval of --drop-log-burst; then one 'suppressed K' line per reason",
}


def parse_config(argv: Sequence[str]) -> NodeConfig | None:
    """Parse and validate; None means --list-bugs (nothing to run). Raises BadConfiguration."""
    args = _parser().parse_args(argv)
    if args.list_bugs:
        return None
    for flag, value in (("--id", args.id), ("--peers", args.peers), ("--data", args.data)):
        if value is None:
            raise BadConfiguration(
                f"{flag} is required. A node needs its index (--id I), every replica's address in index "
                "order (--peers H:P,H:P,H:P) and a data directory (--data DIR)."
            )
    try:
        peers = tuple(parse_peers(args.peers))
    except ValueError as error:
        raise BadConfiguration(f"--peers {args.peers!r} is not valid: {error}.") from None
    _check_peers(peers, args.peers)
    if not 0 <= args.id < len(peers):
        raise BadConfiguration(
            f"--id {args.id} is not a replica index: with {len(peers)} peers the index must be in "
            f"0..{len(peers) - 1} (the node listens on peers[id])."
        )
    if not 0 <= args.cluster < 1 << 64:
        raise BadConfiguration(f"--cluster {args.cluster} does not fit the header's u64 cluster field.")
    if not 1 <= args.tick_ms <= 1000:
        raise BadConfiguration(f"--tick-ms {args.tick_ms} is outside 1..1000 ms (the default is 10).")
    try:
        bugs = bug_registry.parse_bugs(args.bug)
    except ValueError as error:
        raise BadConfiguration(str(error)) from None
    limits = BusLimits(**{_limit_name(flag): getattr(args, _limit_name(flag)) for flag in _LIMIT_FLAGS})
    problems = limits.problems()
    if problems:
        raise BadConfiguration(
            f"the connection limits are not usable: {'; '.join(problems)} (flags --connections-max, "
            "--partial-frames-max-bytes etc.; python -m vr.node --help lists them with their defaults)."
        )
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little")
    config = NodeConfig(
        replica=args.id,
        peers=peers,
        data_dir=args.data,
        format=args.format,
        cluster=args.cluster,
        log_path=args.log,
        events_path=args.events,
        bugs=bugs,
        tick_ms=args.tick_ms,
        seed=seed,
        limits=limits,
        event_loop=_event_loop_name(args.event_loop),
    )
    _check_files(config)
    return config


def _check_peers(peers: tuple[Address, ...], text: str) -> None:
    count = len(peers)
    if count > REPLICA_COUNT_MAX or count % 2 == 0:
        raise BadConfiguration(
            f"--peers {text!r} names {count} replicas; a cluster needs an odd count from 1 to "
            f"{REPLICA_COUNT_MAX} (N = 2f+1 tolerates f failures; an even N adds a replica but no tolerance)."
        )
    seen: dict[Address, int] = {}
    for index, address in enumerate(peers):
        if address in seen:
            raise BadConfiguration(
                f"--peers {text!r} gives {address} to both replica {seen[address]} and replica {index}; "
                "every replica needs its own listening address."
            )
        seen[address] = index


def _check_files(config: NodeConfig) -> None:
    if not os.path.isdir(config.data_dir):
        raise BadConfiguration(
            f"--data {config.data_dir!r} is not an existing directory. Create it first; the node keeps "
            f"its one data file ({DATA_FILE_NAME}) inside it."
        )
    exists = os.path.exists(config.data_path)
    if not exists and not config.format:
        raise BadConfiguration(
            f"the data file {config.data_path} does not exist, and the node will not start blank without "
            "--format. A replica that lost its data and came back empty would deny having ops it once "
            "acknowledged, and a view change counting it could discard committed writes (docs/vr.md bug #10). "
            "If this is a brand-new replica of a brand-new cluster, start it once with --format; if it lost "
            "its disk, it must be rebuilt from its peers, not reformatted."
        )
    if exists and config.format:
        raise BadConfiguration(
            f"--format was given but {config.data_path} already exists. Formatting over a replica's data "
            "would make it forget what it acknowledged; remove the file yourself if you really mean to "
            "destroy this replica's state, or drop --format to restart it from its data."
        )
    for flag, path in (("--log", config.log_path), ("--events", config.events_path)):
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise BadConfiguration(f"{flag} {path!r}: the directory it would be written in does not exist.")


# --- the running node ------------------------------------------------------------------------


class Node:
    """Wires a Replica to the bus, the data file, the clock and the event log, and runs the loop."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.layout = Layout()
        self.events = EventLog(config.events_path, replica=config.replica)
        self.storage: FileStorage | None = None
        self.bus: Bus | None = None
        self.replica: Replica | None = None
        self._io: FlushThread | None = None
        self._stop = asyncio.Event()
        self._started_ns = time.monotonic_ns()
        self.ticks = 0
        self.batches = 0
        self.messages = 0
        # Where the loop's time goes (the bench reads these): handling messages, flushing, ticking.
        self.handle_ns = 0
        self.flush_ns = 0  # begin, complete and inline runs of flushes (not the I/O thread's time)
        self.tick_ns = 0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.config
        # Listen first: a taken address is refused before anything touches the data file.
        self.bus = Bus(
            replica=config.replica,
            peers=config.peers,
            cluster=config.cluster,
            rng=random.Random(config.seed ^ 0xB05),
            limits=config.limits,
        )
        try:
            await self.bus.start()
        except OSError as error:
            address = config.peers[config.replica]
            raise StartupRefused(
                f"replica {config.replica} cannot listen on {address}: {error.strerror or error}. "
                "Check that the address is local to this machine and that no other process (an old node?) "
                "is listening on it."
            ) from None
        try:
            self._open()
        except BaseException:
            await self.bus.close()
            raise
        config = self.config
        logger.info(
            "node=started replica=%d peers=%s data=%s cluster=%d seed=%d bugs=%s pid=%d event_loop=%s",
            config.replica,
            ",".join(str(p) for p in config.peers),
            config.data_path,
            config.cluster,
            config.seed,
            ",".join(sorted(config.bugs)) or "none",
            os.getpid(),
            config.event_loop,
        )
        assert self.storage is not None and self.replica is not None
        self._io = FlushThread(
            storage=self.storage, replica=self.replica, loop=asyncio.get_running_loop(), wake=self.bus.wake
        )
        try:
            await self._loop()
        except BaseException:
            await self._close()  # no flush: after a failed assertion nothing the replica holds is trusted
            raise
        self._flush_for_stop()
        await self._close()
        logger.info("node=stopped replica=%d", self.config.replica)

    def _open(self) -> None:
        """Format (if asked), open the data file and the replica (messages wait in the bus's inbox)."""
        config = self.config
        if config.format:
            self._format_data_file()
        try:
            self.storage = FileStorage(config.data_path, size_bytes=self.layout.size_bytes)
        except ValueError as error:  # a data file of another layout's size
            raise StartupRefused(f"{error}.") from None
        except OSError as error:
            raise StartupRefused(
                f"cannot open the data file {config.data_path}: {error.strerror or error}."
            ) from None
        try:
            self.replica = self._open_replica()
            _drop_page_cache(config.data_path)  # after recovery's reads: see the function's docstring
        except ValueError as error:  # the data file belongs to another cluster or replica
            raise StartupRefused(f"{error}; refusing to run on someone else's data.") from None
        except (SuperBlockError, JournalError) as error:
            raise StartupRefused(
                f"the data file {config.data_path} cannot be trusted ({error}). The replica will not run on "
                "state it cannot prove: restore the file, or rebuild this replica from its peers; do not "
                "--format it back into the cluster blank (docs/vr.md §2.5)."
            ) from None

    def _open_replica(self) -> Replica:
        config = self.config
        assert self.storage is not None and self.bus is not None
        return Replica.open(
            storage=self.storage,
            layout=self.layout,
            bus=self.bus,
            cluster=config.cluster,
            replica=config.replica,
            replica_count=len(config.peers),
            seed=config.seed,
            bugs=config.bugs,
            emit=self.events.emit,
            wall_clock_ns=time.time_ns,
        )

    def _format_data_file(self) -> None:
        """Format into a temporary file and rename it into place, so a crash mid-format leaves no
        half-formatted ``replica.vr`` that a restart would then refuse or misread."""
        config = self.config
        staging = config.data_path + ".formatting"
        if os.path.exists(staging):
            os.unlink(staging)
        try:
            with FileStorage(staging, size_bytes=self.layout.size_bytes, create=True) as storage:
                _preallocate(storage, staging, self.layout.size_bytes)
                format_data_file(
                    storage,
                    cluster=config.cluster,
                    replica=config.replica,
                    replica_count=len(config.peers),
                    layout=self.layout,
                )
                storage.sync()
        except BaseException:
            if os.path.exists(staging):
                os.unlink(staging)  # a half-formatted file is worthless; the next --format starts clean
            raise
        os.rename(staging, config.data_path)
        directory = os.open(config.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        logger.info("node=formatted path=%s size_bytes=%d", config.data_path, self.layout.size_bytes)

    async def _loop(self) -> None:
        bus, replica, io = self.bus, self.replica, self._io
        assert bus is not None and replica is not None and io is not None
        tick_s = self.config.tick_ms / 1000
        next_tick_s = time.monotonic() + tick_s
        while not self._stop.is_set():
            await bus.wait_inbox(max(0.0, next_tick_s - time.monotonic()))
            batch = bus.drain_inbox()
            began_ns = time.monotonic_ns()
            if batch:
                self.batches += 1
                self.messages += len(batch)
                for inbound in batch:
                    self._dispatch(inbound)
                self.handle_ns += time.monotonic_ns() - began_ns
            now_s = time.monotonic()
            ticked = now_s >= next_tick_s
            if ticked:
                self.ticks += 1
                tick_began_ns = time.monotonic_ns()
                replica.tick()
                self.tick_ns += time.monotonic_ns() - tick_began_ns
                # Ticks are logical time: after a stall (SIGSTOP, an overloaded machine) run one
                # tick, not a burst, so a slow node does not fire every timeout at once.
                next_tick_s = max(next_tick_s + tick_s, now_s + tick_s / 2)
            flush_began_ns = time.monotonic_ns()
            completed = io.poll_completion()
            if batch or ticked or completed:
                flush = replica.begin_flush()
                while flush is not None:
                    if not io.inline:
                        io.submit(flush)
                        break
                    bus.flush_sends()  # prepares and released messages leave before this node syncs
                    io.run_inline(flush)
                    flush = replica.begin_flush()
            self.flush_ns += time.monotonic_ns() - flush_began_ns
            bus.flush_sends()

    def _dispatch(self, inbound: Inbound) -> None:
        command = inbound.message.header.command
        if command == Command.STATUS_REQUEST:
            self._answer_status(inbound)
        elif command == Command.STATUS_REPLY:
            assert self.bus is not None
            self.bus.dropped["status-reply-unexpected"] += 1
        else:
            assert self.replica is not None
            self.replica.on_message(inbound.message)

    def status(self) -> dict[str, Any]:
        """``replica.status()`` (contracts §3) plus what only the node knows: bus, storage, process."""
        assert self.bus is not None and self.storage is not None and self.replica is not None
        status: dict[str, Any] = dict(self.replica.status())
        counters = dict(status.get("counters", {}))
        dropped = dict(counters.get("dropped", {}))
        for reason, count in self.bus.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + count
        counters["dropped"] = dropped
        status["counters"] = counters
        status["bus"] = self.bus.snapshot_counters()
        status["storage"] = {
            "fsyncs": self.storage.sync_count,
            "writes": self.storage.write_count,
            "write_bytes": self.storage.write_bytes,
            "reads": self.storage.read_count,
        }
        status["node"] = {
            "pid": os.getpid(),
            "uptime_ms": (time.monotonic_ns() - self._started_ns) // 1_000_000,
            "ticks": self.ticks,
            "batches": self.batches,
            "messages": self.messages,
            "handle_ms": self.handle_ns // 1_000_000,
            "flush_ms": self.flush_ns // 1_000_000,
            "tick_ms_total": self.tick_ns // 1_000_000,
            "tick_ms": self.config.tick_ms,
            "bugs": sorted(self.config.bugs),
            "seed": self.config.seed,
            "event_loop": self.config.event_loop,
            "flushes": self._io.flushes if self._io is not None else 0,
            "flushes_inline": self._io.flushes_inline if self._io is not None else 0,
            "flush_run_ms_max": round(self._io.run_ns_max / 1e6, 3) if self._io is not None else 0,
        }
        return status

    def _answer_status(self, inbound: Inbound) -> None:
        assert self.bus is not None and self.replica is not None
        request = inbound.message.header
        query = _status_query(inbound.message.body)
        if query is None:
            self.bus.dropped["status-request-invalid"] += 1
            return
        status = self.status()
        if "convergence" in query:
            status["convergence"] = self.replica.convergence(**query["convergence"])
        body = json.dumps(status, default=str).encode()
        if len(body) > MESSAGE_SIZE_MAX - HEADER_SIZE and "convergence" in status:
            status["convergence"]["state"].pop("key_hashes", None)
            for probe in status["convergence"]["probes"].values():
                if probe is not None:
                    probe.pop("key_hashes", None)
            status["convergence"]["key_hashes_dropped"] = "too many keys for one status reply"
            body = json.dumps(status, default=str).encode()
        reply = make_message(
            command=Command.STATUS_REPLY,
            cluster=self.config.cluster,
            body=body,
            replica=self.config.replica,
            view=int(status.get("view", 0)),
            client=request.client,
            request=request.request,
            context=request.checksum,
        )
        self.bus.reply_on(inbound.connection, reply)

    def _flush_for_stop(self) -> None:
        """Clean stop: make durable what the replica staged and send what that released.

        A failure here (an fsync error) propagates, so the exit code says the stop was not clean.
        """
        assert self.replica is not None and self.bus is not None
        if self._io is not None:
            self._io.drain()
        self.replica.flush()
        self.bus.flush_sends()

    async def _close(self) -> None:
        if self._io is not None:
            self._io.close()  # before the storage closes: a write half-issued is finished, not cut
        if self.bus is not None:
            await self.bus.close()
        if self.storage is not None:
            self.storage.close()
        self.events.close()


VALUES_MAX = 32  # keys whose current values one convergence query may ask for


def _status_query(body: bytes) -> dict[str, Any] | None:
    """A STATUS_REQUEST body: empty, or JSON ``{"convergence": {"probe_op"?, "keys"?, "values"?}}``.

    None for anything else (network bytes: counted and dropped, never a crash).
    """
    if not body:
        return {}
    try:
        query = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(query, dict) or set(query) - {"convergence"}:
        return None
    if "convergence" not in query:
        return {}
    wanted = query["convergence"]
    if not isinstance(wanted, dict) or set(wanted) - {"probe_op", "keys", "values"}:
        return None
    values = wanted.get("values", [])
    if (
        not isinstance(values, list)
        or len(values) > VALUES_MAX
        or not all(isinstance(k, str) for k in values)
    ):
        return None
    probe_op = wanted.get("probe_op")
    if probe_op is not None and (type(probe_op) is not int or not 0 <= probe_op < 1 << 63):
        return None
    if type(wanted.get("keys", False)) is not bool:
        return None
    return {"convergence": {"probe_op": probe_op, "keys": wanted.get("keys", False), "values": values}}


def _preallocate(storage: FileStorage, path: str, size_bytes: int) -> None:
    """Reserve the data file's blocks at --format, and write them once, so neither a full disk nor
    extent conversion lands on the running replica.

    fallocate alone reserves the blocks (a full disk is refused now, not mid-run) but leaves them
    as *unwritten* extents: every first journal write into one converts it, and that conversion is
    a metadata change the next fdatasync must commit to the filesystem's journal. Measured on this
    machine's ext4: fdatasync after an 8 KiB write costs 0.29 ms p50 into a fallocated region and
    0.14 ms into a written one, and a replica's first pass over its 1024-slot ring (every slot, at
    two syncs per flush) would pay it throughout. So the whole file is zero-filled here (96 MiB
    default layout: ~0.1 s) and synced. The large page-cache folios these big writes leave behind
    are dropped when FileStorage opens the file (``_advise_small_pages``), so later 4 KiB writes do
    not write back 2 MiB folios. A filesystem that cannot preallocate still works, sparse and
    unwritten, so that is logged, not fatal.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.posix_fallocate(fd, 0, size_bytes)
        zeros = bytes(ZERO_FILL_CHUNK_BYTES)
        for offset in range(0, size_bytes, ZERO_FILL_CHUNK_BYTES):
            storage.write(offset, zeros[: min(ZERO_FILL_CHUNK_BYTES, size_bytes - offset)])
        storage.sync()
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise StartupRefused(
                f"no space for the {size_bytes}-byte data file {path}: free some space or use another --data "
                "directory (the whole file is reserved at --format so a full disk cannot fail a running replica)."
            ) from None
        logger.warning("node=preallocate-failed path=%s error=%s (running on a sparse file)", path, error)
    finally:
        os.close(fd)


def _drop_page_cache(path: str) -> None:
    """Evict the data file from the page cache once the replica has opened (and recovered) it.

    Format writes whole zones at once and recovery reads whole rings with readahead, and on this
    kernel both leave large page-cache folios behind; a later 4 KiB journal write into one dirties,
    and writes back, the whole folio (measured with /proc/<pid>/io: 56-1000 KiB written per 8 KiB
    journal write). Evicted pages come back at the size of the write. Only clean pages are dropped
    (everything was synced by format and recovery), so this costs durability nothing.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# --- process entry ---------------------------------------------------------------------------


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def _event_loop_name(asked: str) -> str:
    """The loop the node will run: uvloop's when importable (auto, the default), else asyncio's.

    The node's loop time is mostly per-message overhead (wake-ups, socket reads and writes);
    uvloop does that part in C (libuv). The package stays importable with the standard library
    alone, because docker and ssh nodes run it with whatever python3 the host has; the bus uses
    only what both loops provide.
    """
    if asked == "asyncio":
        return asked
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if asked == "uvloop":
            raise BadConfiguration(
                "--event-loop uvloop: uvloop is not installed for this python (pip install uvloop), "
                "or use --event-loop asyncio."
            ) from None
        return "asyncio"
    return "uvloop"


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _raise_fd_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: every connection is a descriptor, and the
    common soft default (1024) would otherwise cap the node below its own connection bounds."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as error:
        logger.warning("node=fd-limit-unchanged error=%s", error)
        return
    logger.info("node=fd-limit soft=%d raised_from=%d", hard, soft)


def _configure_logging(log_path: str | None) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_path, encoding="utf-8") if log_path else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("ts=%(asctime)s level=%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def _serve(node: Node) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, node.stop)
    await node.run()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv)
    except BadConfiguration as error:
        print(f"vr.node: error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if config is None:
        print(bug_registry.describe())
        return EXIT_OK
    try:
        _configure_logging(config.log_path)
    except OSError as error:
        print(f"vr.node: error: cannot open --log {config.log_path!r}: {error.strerror}.", file=sys.stderr)
        return EXIT_BAD_CONFIG
    _raise_fd_limit()
    # The I/O thread (vr.flush_thread) needs the GIL for a moment between its write and sync
    # syscalls; with the default 5 ms switch interval it can wait that long behind a loop busy
    # with a big batch, and the flush (and every ack behind it) with it. It never holds the GIL
    # for long, so a short interval costs the loop little (bench/vr_throughput.py, 4 alternating
    # cells at 10 and 50 clients, load 7-10 on 2 cores: p50 1-17% lower, the same CPU per op).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        node = Node(config)
    except OSError as error:
        print(
            f"vr.node: error: cannot open --events {config.events_path!r}: {error.strerror}.", file=sys.stderr
        )
        return EXIT_BAD_CONFIG
    try:
        with asyncio.Runner(loop_factory=_loop_factory(config.event_loop)) as runner:
            runner.run(_serve(node))
    except StartupRefused as refusal:
        logger.error("node=refused replica=%d reason=%s", config.replica, json.dumps(str(refusal)))
        print(f"vr.node: error: {refusal}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except Exception:
        # An assertion in the replica is a found bug, not an error to hide: log it whole and exit.
        logger.exception("node=crashed replica=%d", config.replica)
        return EXIT_CRASH
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
