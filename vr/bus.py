"""The node's message bus: framed, checksummed messages over asyncio TCP.

One listening address per node (``peers[replica]``) takes connections from the
other replicas and from clients alike. Each replica also dials every other
replica and sends only on that outgoing connection, so "send to replica i"
never depends on who connected first; reconnects back off with jitter from a
seeded rng, so a run's retry timing is reproducible from its seed.

Framing follows contracts §1: take 128 header bytes, verify the header checksum,
the cluster and the size, then take the body and verify its checksum. Bytes that
fail are dropped and counted by reason (``dropped[reason]``), and the connection
that sent them is closed: after garbage nothing on that stream can be trusted to
be a frame boundary. Nothing a peer sends can raise out of the bus.

Sends are queued (``send_to_replica``, ``send_to_client``) and written out by
``flush_sends()``, which the node calls after ``replica.flush()``: a PrepareOk or
a Reply must never leave before the journal write it stands for is durable.
Every queue is bounded; a slow or absent peer loses messages (counted), which VR
already tolerates, rather than growing the node's memory without limit.

Anyone who can reach the port can open connections, so what a node gives them is bounded
too (``BusLimits``): connections in total and per source address, the bytes held for
unfinished frames across all connections, and the time a connection may stay silent (no
complete frame) or keep a frame unfinished. At a bound the bus makes room rather than
refusing the newcomer: it closes the oldest connection that has not yet sent a complete
frame, then the client connection idle the longest. Replicas always get through: each
dialled connection opens with a PING in the dialler's name (the hello), and a connection
identified as a replica (from an address that replica may use) is never evicted, only
replaced by that replica's next connection. Every close is counted by reason
(``closed[reason]``); the log lines for drops and closes are rate-limited (vr.log_limit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields

from vr.log_limit import LogLimiter
from vr.message import (
    CLIENT_REPLICA,
    HEADER_SIZE,
    MESSAGE_SIZE_MAX,
    Command,
    Header,
    InvalidMessage,
    Message,
    checksum,
    decode_header,
    make_message,
)

logger = logging.getLogger(__name__)

# Limits, each with the reason it exists.
SEND_QUEUE_MAX = 4096  # messages queued for one connection between two flushes
WRITE_BUFFER_MAX_BYTES = 8 * MESSAGE_SIZE_MAX  # unsent bytes in a transport before we call the peer slow
# One read's buffer, shared by every connection of the bus (a read is copied out before the next
# one), so an idle connection costs no buffer of its own; a larger frame takes several reads.
RECEIVE_BUFFER_BYTES = 64 * 1024
INBOX_MAX = 8192  # decoded messages waiting for the node loop before reading pauses
CLIENT_ROUTES_MAX = 65536  # client id -> connection entries remembered
LISTEN_BACKLOG = 512  # handshaken connections the kernel queues before the node accepts them
# File descriptors kept back from connections: the data file, logs, the listening and dialled
# sockets, the event loop's own; accepted sockets beyond the bound exist until the bus closes them.
FD_RESERVE = 64 + LISTEN_BACKLOG
RECONNECT_BACKOFF_MIN_S = 0.02
RECONNECT_BACKOFF_MAX_S = 1.0
# A SYN into a partition is dropped and the kernel would retry it for minutes; give up and redial.
CONNECT_TIMEOUT_S = 1.0
# Unacknowledged data older than this aborts the connection (TCP_USER_TIMEOUT). Without it, after a
# partition heals an established stream waits out TCP's backed-off retransmission timer (tens of
# seconds) before delivering anything; with it, the stream dies during the partition and is redialled
# within about a second of the heal. Replicas send heartbeats every ~100 ms, so a dead path shows.
USER_TIMEOUT_MS = 2000

# What an inbound connection is known to be: nothing yet, a client, or one of the replicas.
KIND_NEW, KIND_CLIENT, KIND_REPLICA, KIND_OUTBOUND = "new", "client", "replica", "outbound"


@dataclass(frozen=True, slots=True)
class BusLimits:
    """What a node gives to the connections that reach it. The node's flags set these
    (``--connections-max`` etc., contracts §3); each bound is there because without it one
    host that opens connections or sends half frames could take the node from everyone."""

    connections_max: int = 2048  # inbound connections in total (lowered further to fit RLIMIT_NOFILE)
    connections_per_host_max: int = 512  # inbound connections from one source address
    replica_connections_per_peer_max: int = 2  # connections identified as one replica (a redial overlaps)
    first_frame_timeout_ms: int = 5000  # a connection with no complete frame by then is silent: closed
    frame_timeout_ms: int = 10_000  # a frame started and not finished by then is dropped (slowloris)
    partial_frames_max_bytes: int = 32 * MESSAGE_SIZE_MAX  # held for unfinished frames, all connections
    drop_log_burst: int = 10  # log lines per drop (or close) reason per interval ...
    drop_log_interval_ms: int = 10_000  # ... then one "suppressed K" line per reason and interval

    def problems(self) -> list[str]:
        """What is out of range, one phrase each (empty when the limits are usable)."""
        found = []
        for field in fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                found.append(f"{field.name} {value!r} must be a positive integer")
        if self.partial_frames_max_bytes < MESSAGE_SIZE_MAX:
            found.append(
                f"partial_frames_max_bytes {self.partial_frames_max_bytes} is below one whole frame "
                f"({MESSAGE_SIZE_MAX} bytes), so a legitimate large message could never arrive"
            )
        if self.connections_per_host_max > self.connections_max:
            found.append(
                f"connections_per_host_max {self.connections_per_host_max} is above connections_max "
                f"{self.connections_max}"
            )
        return found


def fd_bounded_connections(limit: int) -> int:
    """``limit`` lowered so that accepted sockets never exhaust the process's file descriptors:
    at EMFILE asyncio stops accepting for a second at a time, which locks everyone out."""
    try:
        import resource
    except ImportError:  # not POSIX: nothing to read
        return limit
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit
    # Under a small limit the full reserve would leave nothing: keep at least half for connections.
    return max(1, min(limit, max(soft // 2, soft - FD_RESERVE)))


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``host:port`` -> Address; raises ValueError with the accepted form in the message."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:4001)")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r} has port {port}, outside 1..65535")
    return Address(host.strip("[]"), port)


def parse_peers(text: str) -> list[Address]:
    """``H:P,H:P,H:P`` -> addresses in replica-index order."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"{text!r} names no peers; give H:P,H:P,H:P in replica-index order")
    return [parse_address(part) for part in parts]


def configure_socket(sock: socket.socket) -> None:
    """No Nagle delay (messages are small and latency-bound); abort streams stuck in a partition."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
    if user_timeout is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, user_timeout, USER_TIMEOUT_MS)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One validated message and the connection it came on (replies to clients go back there)."""

    message: Message
    connection: Connection | None


class Connection(asyncio.BufferedProtocol):
    """One TCP stream: parses frames in, writes queued frames out.

    A buffered protocol: the event loop reads into a preallocated buffer (``recv_into``). A plain
    Protocol gets a fresh ``recv(256 KiB)`` bytes object per read, and allocating and shrinking
    that costs ~20 us per read on this machine (measured), against ~3 us for ``recv_into``; a
    node reads once per client request. The buffer is the bus's, shared: the loop calls
    ``get_buffer``, ``recv_into`` and ``buffer_updated`` in one go, and the bytes are copied out
    before the next read, so an idle connection holds no buffer of its own.
    """

    def __init__(self, bus: Bus, *, role: str, peer_replica: int | None = None) -> None:
        self.bus = bus
        self.role = role  # "inbound" (accepted) or "outbound" (dialled to a replica)
        self.peer_replica = peer_replica  # outbound: whom we dialled; inbound: who it proved to be
        self.kind = KIND_NEW if role == "inbound" else KIND_OUTBOUND
        self.host = ""  # the source address of an inbound connection
        self.accepted_s = 0.0
        self.last_frame_s = 0.0  # the bus's coarse clock at the last complete frame (for eviction)
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.name = role
        self.client_ids: set[int] = set()
        self._buffer = bytearray()
        self._header: Header | None = None  # header of the frame whose body we are waiting for
        self._partial_since_s: float | None = None
        self.held_bytes = 0  # bytes of unfinished frames charged to the bus's budget
        self.pending: list[bytes] = []

    # asyncio.Protocol callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio.Transport under asyncio's loop; uvloop's has the same methods
        # without the base class (vr/node.py picks the loop).
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            configure_socket(sock)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.host = str(peer[0])
            self.name = f"{self.role}:{peer[0]}:{peer[1]}"
        self.bus._connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.bus._connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.bus._receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the next read (of any connection) reuses the buffer.
        self.data_received(bytes(self.bus._receive_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.bus.counters["bytes_received"] += len(data)
        try:
            self._parse(data)
        except InvalidMessage as error:
            self.bus._drop(error.reason)
            self.bus._log.info(
                f"drop:{error.reason}",
                "bus=drop reason=%s connection=%s detail=%s",
                error.reason,
                self.name,
                error.detail,
            )
            self.bus._close(self, "invalid-frame", log=False)

    def eof_received(self) -> bool | None:
        if self._buffer:
            self.bus._drop("truncated")
        return None  # close the transport

    # framing ---------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Deliver every whole frame in what we had plus ``data``; keep the incomplete rest.

        Frames are cut straight from the received bytes: a message that arrived whole (the usual
        case) is copied once, into its body, not first appended to a buffer and cut from that.
        What stays buffered is charged to the bus's budget for unfinished frames.
        """
        held = len(self._buffer)
        if held:
            self._buffer += data
            if self._header is not None and len(self._buffer) < self._header.size:
                self.bus._charge_partial(self, len(data))  # a large frame still arriving: no copy per piece
                return
            data = bytes(self._buffer)
            self._buffer = bytearray()
        length = len(data)
        offset = 0
        cluster = self.bus.cluster
        deliver = self.bus._deliver
        while True:
            header = self._header
            if header is None:
                if length - offset < HEADER_SIZE:
                    break
                header = decode_header(data[offset : offset + HEADER_SIZE], cluster=cluster)
                self._header = header
            end = offset + header.size
            if end > length:
                break
            body = data[offset + HEADER_SIZE : end]
            offset = end
            self._header = None
            if checksum(body) != header.checksum_body:
                raise InvalidMessage("body-checksum")
            deliver(Message(header, body), self)
            if self.transport is None or self.transport.is_closing():
                return
        if offset < length:
            self._buffer += data[offset:] if offset else data
            if self._partial_since_s is None or offset:
                self._partial_since_s = time.monotonic()
        else:
            self._partial_since_s = None
        if held or self._buffer:
            self.bus._charge_partial(self, len(self._buffer) - held)

    def release_partial(self) -> None:
        """Forget the unfinished frame (the connection is going away) and give its bytes back."""
        self._buffer = bytearray()
        self._header = None
        self._partial_since_s = None
        if self.held_bytes:
            self.bus._charge_partial(self, -self.held_bytes)

    def stalled(self, now_s: float) -> bool:
        """True when a frame was started long ago and is still incomplete."""
        return self._partial_since_s is not None and now_s - self._partial_since_s > self.bus.frame_timeout_s

    def partial_started_s(self) -> float:
        return self._partial_since_s if self._partial_since_s is not None else float("inf")

    # sending ---------------------------------------------------------------------------------

    def queue(self, data: bytes) -> bool:
        if self.transport is None or self.transport.is_closing():
            self.bus._drop("send-not-connected")
            return False
        if len(self.pending) >= SEND_QUEUE_MAX:
            self.bus._drop("send-queue-full")
            return False
        if not self.pending:
            self.bus._dirty.append(self)
        self.pending.append(data)
        return True

    def write_pending(self) -> None:
        pending, self.pending = self.pending, []
        transport = self.transport
        if not pending:
            return
        if transport is None or transport.is_closing():
            self.bus._drop("send-not-connected", len(pending))
            return
        if transport.get_write_buffer_size() > WRITE_BUFFER_MAX_BYTES:
            self.bus._drop("send-peer-slow", len(pending))
            return
        data = b"".join(pending)
        transport.write(data)
        self.bus.counters["messages_sent"] += len(pending)
        self.bus.counters["bytes_sent"] += len(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


def _host_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a replica's connections must come from, or None when it cannot be told
    (a host name, or a wildcard listen address: any source is then accepted)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return None if address.is_unspecified else address


def _same_host(expected: ipaddress.IPv4Address | ipaddress.IPv6Address, source: str) -> bool:
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == expected


class Bus:
    """The Bus interface the Replica uses, plus the node loop's inbox."""

    def __init__(
        self,
        *,
        replica: int,
        peers: Sequence[Address],
        cluster: int,
        rng: random.Random,
        limits: BusLimits | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        assert 0 <= replica < len(peers), f"replica {replica} outside 0..{len(peers) - 1}"
        self.replica = replica
        self.peers = list(peers)
        self.cluster = cluster
        self.limits = limits if limits is not None else BusLimits()
        problems = self.limits.problems()
        assert not problems, "; ".join(problems)
        self.frame_timeout_s = self.limits.frame_timeout_ms / 1000
        self.first_frame_timeout_s = self.limits.first_frame_timeout_ms / 1000
        self.connections_max = self.limits.connections_max  # lowered to the fd limit at start()
        self.connect_timeout_s = connect_timeout_s
        self._rng = rng
        self.dropped: collections.Counter[str] = collections.Counter()
        self.closed: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self._log = LogLimiter(
            logger, burst=self.limits.drop_log_burst, interval_ms=self.limits.drop_log_interval_ms
        )
        self._receive_buffer = memoryview(bytearray(RECEIVE_BUFFER_BYTES))
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._inbox_waiter: asyncio.Future[None] | None = None  # the node loop, parked in wait_inbox
        self._paused: set[Connection] = set()
        # Inbound connections, all and by source address; those that have sent no complete frame
        # yet, in the order they were accepted (the oldest is evicted first and timed out first);
        # those identified as replicas, per replica in the order they were identified.
        self._inbound: set[Connection] = set()
        self._by_host: dict[str, set[Connection]] = {}
        self._new: dict[Connection, None] = {}
        self._new_by_host: dict[str, dict[Connection, None]] = {}
        self._replica_links: dict[int, dict[Connection, None]] = {}
        self._replica_hosts = [_host_of(peer.host) for peer in self.peers]
        self._holding: set[Connection] = set()  # connections holding bytes of an unfinished frame
        self.partial_bytes = 0
        self.clock_s = time.monotonic()  # coarse: advanced by the sweep, read on the hot path
        self._outbound: dict[int, Connection] = {}
        self._client_routes: dict[int, Connection] = {}
        self._dirty: list[Connection] = []
        self._last_encoded: tuple[Message, bytes] | None = None
        self._hello = make_message(command=Command.PING, cluster=cluster, replica=replica).encode()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on our own address and start dialling every other replica."""
        loop = asyncio.get_running_loop()
        address = self.peers[self.replica]
        self.connections_max = fd_bounded_connections(self.limits.connections_max)
        self._server = await loop.create_server(
            lambda: Connection(self, role="inbound"),
            address.host,
            address.port,
            reuse_address=True,
            backlog=LISTEN_BACKLOG,
        )
        for peer in range(len(self.peers)):
            if peer != self.replica:
                self._tasks.append(asyncio.create_task(self._dial_forever(peer)))
        self._tasks.append(asyncio.create_task(self._sweep_forever()))
        if self.connections_max < self.limits.connections_max:
            logger.warning(
                "bus=connections-max-lowered configured=%d in_force=%d reason=RLIMIT_NOFILE",
                self.limits.connections_max,
                self.connections_max,
            )
        logger.info(
            "bus=listening replica=%d address=%s connections_max=%d connections_per_host_max=%d",
            self.replica,
            address,
            self.connections_max,
            self.limits.connections_per_host_max,
        )

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
        for connection in [*self._inbound, *self._outbound.values()]:
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()  # waits for the connections too (Python 3.12+)
        await asyncio.sleep(0)
        self._log.flush(everything=True)

    async def _dial_forever(self, peer: int) -> None:
        loop = asyncio.get_running_loop()
        address = self.peers[peer]
        # Leave from our own listen address, not the kernel's pick (127.0.0.1 for every local node):
        # a packet filter then tells replicas apart by source address (clusters.firewall), and the
        # peer can check that a connection claiming to be us comes from our address.
        own_host = self.peers[self.replica].host
        local_addr = None if own_host in ("", "0.0.0.0", "::") else (own_host, 0)
        backoff_s = RECONNECT_BACKOFF_MIN_S
        while not self._closing:
            try:
                transport, connection = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: Connection(self, role="outbound", peer_replica=peer),
                        address.host,
                        address.port,
                        local_addr=local_addr,
                    ),
                    self.connect_timeout_s,
                )
            except TimeoutError:
                self.counters["connect_timeouts"] += 1
                logger.debug("bus=connect-timeout peer=%d address=%s", peer, address)
            except OSError as error:
                self.counters["connect_failures"] += 1
                logger.debug("bus=connect-failed peer=%d address=%s error=%s", peer, address, error)
            else:
                backoff_s = RECONNECT_BACKOFF_MIN_S
                # The hello goes first, before anything queued: it is what lets the peer tell this
                # connection from the anonymous ones it may close or evict.
                transport.write(self._hello)
                self.counters["hellos_sent"] += 1
                self._outbound[peer] = connection
                logger.info("bus=connected peer=%d address=%s", peer, address)
                await connection.closed
                if self._outbound.get(peer) is connection:
                    del self._outbound[peer]
                logger.info("bus=disconnected peer=%d address=%s", peer, address)
            delay_s = backoff_s * (0.5 + self._rng.random())
            backoff_s = min(backoff_s * 2, RECONNECT_BACKOFF_MAX_S)
            await asyncio.sleep(delay_s)

    async def _sweep_forever(self) -> None:
        """Advance the coarse clock; close silent connections and stalled frames; write log summaries."""
        period_s = max(0.02, min(0.25, self.frame_timeout_s / 4, self.first_frame_timeout_s / 4))
        while not self._closing:
            await asyncio.sleep(period_s)
            self.sweep(time.monotonic())

    def sweep(self, now_s: float) -> None:
        self.clock_s = now_s
        silent_before_s = now_s - self.first_frame_timeout_s
        for connection in list(self._new):  # oldest first: stop at the first that may still speak
            if connection.accepted_s > silent_before_s:
                break
            if connection.held_bytes == 0:
                self._close(connection, "silent")
        for connection in list(self._holding):
            if connection.role == "inbound" and connection.stalled(now_s):
                self._drop("frame-timeout")
                self._close(connection, "frame-timeout")
        self._log.flush()

    # connection bookkeeping ------------------------------------------------------------------

    def _connection_made(self, connection: Connection) -> None:
        if connection.role != "inbound":
            return
        if self._closing:
            connection.close()
            return
        self.counters["connections_accepted"] += 1
        connection.accepted_s = connection.last_frame_s = time.monotonic()
        host = connection.host
        same_host = self._by_host.get(host)
        if same_host is not None and len(same_host) >= self.limits.connections_per_host_max:
            victim = self._evictable(host)
            if victim is None:
                self._close(connection, "refused-host-max")
                return
            self._close(victim, "evicted-host-max")
        if len(self._inbound) >= self.connections_max:
            victim = self._evictable(None)
            if victim is None:
                self._close(connection, "refused-connections-max")
                return
            self._close(victim, "evicted-connections-max")
        self._inbound.add(connection)
        self._by_host.setdefault(host, set()).add(connection)
        self._new[connection] = None
        self._new_by_host.setdefault(host, {})[connection] = None

    def _evictable(self, host: str | None) -> Connection | None:
        """The connection to close to make room: the oldest that has not sent a complete frame,
        else the client idle the longest (of ``host``, or of all). Replicas are never chosen."""
        new = self._new if host is None else self._new_by_host.get(host, {})
        for connection in new:
            return connection
        candidates = self._inbound if host is None else self._by_host.get(host, set())
        clients = [c for c in candidates if c.kind == KIND_CLIENT]
        return min(clients, key=lambda c: c.last_frame_s) if clients else None

    def _close(self, connection: Connection, reason: str, *, log: bool = True) -> None:
        """Close a connection for ``reason`` (counted in ``closed``) and stop counting it at once:
        its socket goes away on the next loop iteration, and the bound must hold before then."""
        self.closed[reason] += 1
        if log:
            self._log.info(f"close:{reason}", "bus=close reason=%s connection=%s", reason, connection.name)
        self._forget(connection)
        connection.close()

    def _forget(self, connection: Connection) -> None:
        if connection.role != "inbound":
            connection.release_partial()
            return
        self._inbound.discard(connection)
        host = connection.host
        same_host = self._by_host.get(host)
        if same_host is not None:
            same_host.discard(connection)
            if not same_host:
                del self._by_host[host]
        self._forget_new(connection)
        if connection.kind == KIND_REPLICA and connection.peer_replica is not None:
            links = self._replica_links.get(connection.peer_replica)
            if links is not None:
                links.pop(connection, None)
        connection.release_partial()

    def _forget_new(self, connection: Connection) -> None:
        if connection in self._new:
            del self._new[connection]
            new_here = self._new_by_host.get(connection.host)
            if new_here is not None:
                new_here.pop(connection, None)
                if not new_here:
                    del self._new_by_host[connection.host]

    def _connection_lost(self, connection: Connection) -> None:
        self._forget(connection)
        self._paused.discard(connection)
        for client_id in connection.client_ids:
            if self._client_routes.get(client_id) is connection:
                del self._client_routes[client_id]
        connection.client_ids.clear()

    def _identify(self, connection: Connection, header: Header) -> None:
        """A new connection's first complete frame says what it is: a client, or a replica (if it
        comes from that replica's address). A replica's connections are never evicted; a replica
        that redials replaces its oldest connection instead."""
        self._forget_new(connection)
        sender = header.replica
        if sender == CLIENT_REPLICA or sender == self.replica or sender >= len(self.peers):
            connection.kind = KIND_CLIENT
            return
        expected = self._replica_hosts[sender]
        if expected is not None and not _same_host(expected, connection.host):
            self.counters["replica_claims_unverified"] += 1
            connection.kind = KIND_CLIENT
            return
        connection.kind = KIND_REPLICA
        connection.peer_replica = sender
        links = self._replica_links.setdefault(sender, {})
        links[connection] = None
        while len(links) > self.limits.replica_connections_per_peer_max:
            self._close(next(iter(links)), "replica-superseded")

    def _charge_partial(self, connection: Connection, delta: int) -> None:
        """Account bytes held for unfinished frames; past the budget, shed the largest (then oldest)
        unfinished frame of a connection that is not a replica's, until the budget holds."""
        connection.held_bytes += delta
        self.partial_bytes += delta
        if connection.held_bytes:
            self._holding.add(connection)
        else:
            self._holding.discard(connection)
        if delta <= 0:
            return
        while self.partial_bytes > self.limits.partial_frames_max_bytes:
            shed = [c for c in self._holding if c.kind in (KIND_NEW, KIND_CLIENT)]
            if not shed:
                return  # only replicas hold frames: at most a few, each under MESSAGE_SIZE_MAX
            victim = max(shed, key=lambda c: (c.held_bytes, -c.partial_started_s()))
            self._drop("partial-frames-budget")
            self._close(victim, "partial-frames-budget")

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def _deliver(self, message: Message, connection: Connection) -> None:
        header = message.header
        connection.last_frame_s = self.clock_s
        if connection.kind == KIND_NEW:
            self._identify(connection, header)
            if header.command == Command.PING and connection.kind == KIND_REPLICA:
                self.counters["hellos_received"] += 1
                return  # the hello only introduces the connection; the replica never sees it
        if header.replica == CLIENT_REPLICA:
            if header.client != 0:
                self._route_client(header.client, connection)
        elif header.replica >= len(self.peers):
            raise InvalidMessage("replica", f"sender replica {header.replica} of {len(self.peers)}")
        self.counters["messages_received"] += 1
        self._inbox.append(Inbound(message, connection))
        self._wake()
        if len(self._inbox) >= INBOX_MAX:
            connection.pause()
            self._paused.add(connection)

    def _route_client(self, client_id: int, connection: Connection) -> None:
        previous = self._client_routes.get(client_id)
        if previous is connection:
            return
        if previous is not None:
            previous.client_ids.discard(client_id)
        elif len(self._client_routes) >= CLIENT_ROUTES_MAX:
            oldest_id = next(iter(self._client_routes))
            self._client_routes.pop(oldest_id).client_ids.discard(oldest_id)
        self._client_routes[client_id] = connection
        connection.client_ids.add(client_id)

    # the node loop's side --------------------------------------------------------------------

    async def wait_inbox(self, timeout_s: float) -> None:
        """Return when a message is waiting or after ``timeout_s``, whichever is first.

        A bare future and a timer handle, not ``wait_for(event.wait())``: that builds a task per
        wait, and the node waits once per batch, hundreds of times a second under load.
        """
        if self._inbox:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._inbox_waiter = waiter
        timer = loop.call_later(timeout_s, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._inbox_waiter = None

    def wake(self) -> None:
        """End the current ``wait_inbox`` now: something besides a message needs the loop (a flush
        finished on the node's I/O thread). Call on the loop (``call_soon_threadsafe`` from a thread)."""
        self._wake()

    def _wake(self) -> None:
        waiter = self._inbox_waiter
        if waiter is not None:
            self._inbox_waiter = None
            _resolve(waiter)

    def drain_inbox(self) -> list[Inbound]:
        """Everything readable now: one batch for the replica, then one journal flush."""
        batch = list(self._inbox)
        self._inbox.clear()
        if self._paused:
            for connection in self._paused:
                connection.resume()
            self._paused.clear()
        return batch

    def flush_sends(self) -> None:
        """Write every queued message out (called after the replica's journal flush)."""
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.write_pending()

    # the Bus interface the Replica uses ------------------------------------------------------

    def send_to_replica(self, replica: int, message: Message) -> None:
        assert 0 <= replica < len(self.peers), f"send_to_replica({replica}) of {len(self.peers)}"
        if replica == self.replica:
            # A replica that messages itself gets it back through the same inbox as everyone else.
            self._inbox.append(Inbound(message, None))
            self._wake()
            return
        connection = self._outbound.get(replica)
        if connection is None:
            self._drop("send-not-connected")
            return
        connection.queue(self._encode(message))

    def _encode(self, message: Message) -> bytes:
        """Encode, reusing the bytes of the message encoded last: a broadcast (a prepare to every
        backup) is one message object sent N-1 times, and each encode re-seals the header."""
        last = self._last_encoded
        if last is not None and last[0] is message:
            return last[1]
        data = message.encode()
        self._last_encoded = (message, data)
        return data

    def send_to_client(self, client_id: int, message: Message) -> None:
        connection = self._client_routes.get(client_id)
        if connection is None:
            self._drop("send-client-unknown")
            return
        connection.queue(message.encode())

    def reply_on(self, connection: Connection | None, message: Message) -> None:
        """Answer on the connection a message came on (status replies to anyone)."""
        if connection is None:
            return
        connection.queue(message.encode())

    # introspection ---------------------------------------------------------------------------

    def connected_replicas(self) -> list[int]:
        return sorted(self._outbound)

    def snapshot_counters(self) -> dict[str, object]:
        kinds = collections.Counter(connection.kind for connection in self._inbound)
        return {
            **dict(self.counters),
            "connections_open": len(self._inbound),
            "connections_by_kind": {kind: kinds[kind] for kind in (KIND_NEW, KIND_CLIENT, KIND_REPLICA)},
            "connections_max": self.connections_max,
            "connections_per_host_max": self.limits.connections_per_host_max,
            "partial_frame_bytes": self.partial_bytes,
            "partial_frames_max_bytes": self.limits.partial_frames_max_bytes,
            "log_lines_suppressed": self._log.lines_suppressed,
            "replicas_connected": len(self._outbound),
            "dropped": dict(self.dropped),
            "closed": dict(self.closed),
        }
