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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vr.message import (
    CLIENT_REPLICA,
    HEADER_SIZE,
    MESSAGE_SIZE_MAX,
    Header,
    InvalidMessage,
    Message,
    checksum,
    decode_header,
)

logger = logging.getLogger(__name__)

# Limits, each with the reason it exists.
SEND_QUEUE_MAX = 4096  # messages queued for one connection between two flushes
WRITE_BUFFER_MAX_BYTES = 8 * MESSAGE_SIZE_MAX  # unsent bytes in a transport before we call the peer slow
# One read's buffer (a larger frame takes several reads); x CONNECTIONS_MAX = 16 MiB at most.
RECEIVE_BUFFER_BYTES = 16 * 1024
INBOX_MAX = 8192  # decoded messages waiting for the node loop before reading pauses
CONNECTIONS_MAX = 1024  # inbound connections (clients + replicas) before new ones are refused
CLIENT_ROUTES_MAX = 65536  # client id -> connection entries remembered
FRAME_TIMEOUT_S = 10.0  # a frame started but unfinished for this long is a stalled (slowloris) sender
RECONNECT_BACKOFF_MIN_S = 0.02
RECONNECT_BACKOFF_MAX_S = 1.0
# A SYN into a partition is dropped and the kernel would retry it for minutes; give up and redial.
CONNECT_TIMEOUT_S = 1.0
# Unacknowledged data older than this aborts the connection (TCP_USER_TIMEOUT). Without it, after a
# partition heals an established stream waits out TCP's backed-off retransmission timer (tens of
# seconds) before delivering anything; with it, the stream dies during the partition and is redialled
# within about a second of the heal. Replicas send heartbeats every ~100 ms, so a dead path shows.
USER_TIMEOUT_MS = 2000


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

    A buffered protocol: the event loop reads into our own preallocated buffer (``recv_into``).
    A plain Protocol gets a fresh ``recv(256 KiB)`` bytes object per read, and allocating and
    shrinking that costs ~20 us per read on this machine (measured), against ~3 us for
    ``recv_into``; a node reads once per client request.
    """

    def __init__(self, bus: Bus, *, role: str, peer_replica: int | None = None) -> None:
        self.bus = bus
        self.role = role  # "inbound" (accepted) or "outbound" (dialled to a replica)
        self.peer_replica = peer_replica
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.name = role
        self.client_ids: set[int] = set()
        self._buffer = bytearray()
        self._header: Header | None = None  # header of the frame whose body we are waiting for
        self._partial_since_s: float | None = None
        self._receive_buffer = memoryview(bytearray(RECEIVE_BUFFER_BYTES))
        self.pending: list[bytes] = []

    # asyncio.Protocol callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            configure_socket(sock)
        peer = transport.get_extra_info("peername")
        self.name = f"{self.role}:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else self.role
        self.bus._connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.bus._connection_lost(self)
        if not self.closed.done():
            self.closed.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the next read reuses the buffer, and frames cut from it must stay.
        self.data_received(bytes(self._receive_buffer[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.bus.counters["bytes_received"] += len(data)
        try:
            self._parse(data)
        except InvalidMessage as error:
            self.bus._drop(error.reason)
            logger.info("bus=drop reason=%s connection=%s detail=%s", error.reason, self.name, error.detail)
            self.close()

    def eof_received(self) -> bool | None:
        if self._buffer:
            self.bus._drop("truncated")
        return None  # close the transport

    # framing ---------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Deliver every whole frame in what we had plus ``data``; keep the incomplete rest.

        Frames are cut straight from the received bytes: a message that arrived whole (the usual
        case) is copied once, into its body, not first appended to a buffer and cut from that.
        """
        if self._buffer:
            self._buffer += data
            if self._header is not None and len(self._buffer) < self._header.size:
                return  # a large frame still arriving: no copy per piece
            data = bytes(self._buffer)
            self._buffer.clear()
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
            if self.transport is None:
                break
        if offset < length:
            self._buffer += data[offset:] if offset else data
            if self._partial_since_s is None or offset:
                self._partial_since_s = time.monotonic()
        else:
            self._partial_since_s = None

    def stalled(self, now_s: float) -> bool:
        """True when a frame was started long ago and is still incomplete."""
        return self._partial_since_s is not None and now_s - self._partial_since_s > self.bus.frame_timeout_s

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


class Bus:
    """The Bus interface the Replica uses, plus the node loop's inbox."""

    def __init__(
        self,
        *,
        replica: int,
        peers: Sequence[Address],
        cluster: int,
        rng: random.Random,
        frame_timeout_s: float = FRAME_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        assert 0 <= replica < len(peers), f"replica {replica} outside 0..{len(peers) - 1}"
        self.replica = replica
        self.peers = list(peers)
        self.cluster = cluster
        self.frame_timeout_s = frame_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._rng = rng
        self.dropped: collections.Counter[str] = collections.Counter()
        self.counters: collections.Counter[str] = collections.Counter()
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._inbox_waiter: asyncio.Future[None] | None = None  # the node loop, parked in wait_inbox
        self._paused: set[Connection] = set()
        self._inbound: set[Connection] = set()
        self._outbound: dict[int, Connection] = {}
        self._client_routes: dict[int, Connection] = {}
        self._dirty: list[Connection] = []
        self._last_encoded: tuple[Message, bytes] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on our own address and start dialling every other replica."""
        loop = asyncio.get_running_loop()
        address = self.peers[self.replica]
        self._server = await loop.create_server(
            lambda: Connection(self, role="inbound"), address.host, address.port, reuse_address=True
        )
        for peer in range(len(self.peers)):
            if peer != self.replica:
                self._tasks.append(asyncio.create_task(self._dial_forever(peer)))
        self._tasks.append(asyncio.create_task(self._reap_stalled_forever()))
        logger.info("bus=listening replica=%d address=%s", self.replica, address)

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for connection in [*self._inbound, *self._outbound.values()]:
            connection.close()
        await asyncio.sleep(0)

    async def _dial_forever(self, peer: int) -> None:
        loop = asyncio.get_running_loop()
        address = self.peers[peer]
        # Leave from our own listen address, not the kernel's pick (127.0.0.1 for every local node):
        # a packet filter then tells replicas apart by source address (nemeses.firewall).
        own_host = self.peers[self.replica].host
        local_addr = None if own_host in ("", "0.0.0.0", "::") else (own_host, 0)
        backoff_s = RECONNECT_BACKOFF_MIN_S
        while not self._closing:
            try:
                _, connection = await asyncio.wait_for(
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
                self._outbound[peer] = connection
                logger.info("bus=connected peer=%d address=%s", peer, address)
                await connection.closed
                if self._outbound.get(peer) is connection:
                    del self._outbound[peer]
                logger.info("bus=disconnected peer=%d address=%s", peer, address)
            delay_s = backoff_s * (0.5 + self._rng.random())
            backoff_s = min(backoff_s * 2, RECONNECT_BACKOFF_MAX_S)
            await asyncio.sleep(delay_s)

    async def _reap_stalled_forever(self) -> None:
        period_s = max(0.05, min(1.0, self.frame_timeout_s / 4))
        while not self._closing:
            await asyncio.sleep(period_s)
            now_s = time.monotonic()
            for connection in list(self._inbound):
                if connection.stalled(now_s):
                    self._drop("frame-timeout")
                    logger.info("bus=drop reason=frame-timeout connection=%s", connection.name)
                    connection.close()

    # connection bookkeeping ------------------------------------------------------------------

    def _connection_made(self, connection: Connection) -> None:
        if connection.role != "inbound":
            return
        if len(self._inbound) >= CONNECTIONS_MAX:
            self._drop("connections-max")
            connection.close()
            return
        self._inbound.add(connection)
        self.counters["connections_accepted"] += 1

    def _connection_lost(self, connection: Connection) -> None:
        self._inbound.discard(connection)
        self._paused.discard(connection)
        for client_id in connection.client_ids:
            if self._client_routes.get(client_id) is connection:
                del self._client_routes[client_id]
        connection.client_ids.clear()

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] += count

    def _deliver(self, message: Message, connection: Connection) -> None:
        header = message.header
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
        return {
            **dict(self.counters),
            "connections_open": len(self._inbound),
            "replicas_connected": len(self._outbound),
            "dropped": dict(self.dropped),
        }
