"""The bus over real loopback TCP: messages flow, and hostile bytes are dropped, counted and survived.

Every test runs two or three real `Bus` instances (or a bus and raw sockets) in
one event loop; nothing here is mocked. The claim is the contract's: a node never
crashes on network bytes, drops what fails validation with a reason, and closes
the connection that sent garbage while everyone else keeps being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable

import pytest

from vr.bus import RECEIVE_BUFFER_BYTES, USER_TIMEOUT_MS, Address, Bus, BusLimits, parse_address, parse_peers
from vr.message import (
    CLIENT_REPLICA,
    HEADER_SIZE,
    MESSAGE_SIZE_MAX,
    Command,
    Header,
    Operation,
    checksum,
    make_message,
)

CLUSTER = 7


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind((host, 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def make_peers(count: int) -> list[Address]:
    return [Address("127.0.0.1", port) for port in free_ports(count)]


async def until(predicate: Callable[[], bool], *, timeout_s: float = 5.0, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def request(client: int, number: int, *, cluster: int = CLUSTER, key: str = "k") -> bytes:
    body = json.dumps({"key": key, "value": 1}).encode()
    return make_message(
        command=Command.REQUEST,
        cluster=cluster,
        body=body,
        replica=CLIENT_REPLICA,
        operation=Operation.WRITE,
        client=client,
        request=number,
    ).encode()


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=30))


async def open_raw(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(address.host, address.port)


async def closed_by_peer(reader: asyncio.StreamReader, *, timeout_s: float = 5.0) -> bool:
    """True when the other side closed the stream (read returns EOF or reset)."""
    try:
        data = await asyncio.wait_for(reader.read(1 << 16), timeout_s)
    except (ConnectionResetError, TimeoutError):
        return True  # reset counts; a timeout is re-checked by the caller's assertion
    return data == b""


def test_parse_peers_accepts_host_port_list_and_rejects_junk() -> None:
    assert parse_peers("127.0.0.1:4001,127.0.0.2:4002") == [
        Address("127.0.0.1", 4001),
        Address("127.0.0.2", 4002),
    ]
    assert parse_address("[::1]:9") == Address("::1", 9)
    for junk in ["", "localhost", "h:", "h:0", "h:70000", "h:abc"]:
        with pytest.raises(ValueError):
            parse_peers(junk) if junk == "" else parse_address(junk)


def test_two_buses_exchange_messages_over_loopback() -> None:
    async def body() -> None:
        peers = make_peers(3)
        buses = [Bus(replica=i, peers=peers, cluster=CLUSTER, rng=random.Random(i)) for i in range(2)]
        for bus in buses:
            await bus.start()
        try:
            await until(lambda: buses[0].connected_replicas() == [1], what="bus 0 dialled bus 1")
            await until(lambda: buses[1].connected_replicas() == [0], what="bus 1 dialled bus 0")
            sent = [
                make_message(command=Command.PREPARE_OK, cluster=CLUSTER, replica=0, view=3, op=op)
                for op in range(1, 101)
            ]
            for message in sent:
                buses[0].send_to_replica(1, message)
            assert buses[1].drain_inbox() == []  # nothing leaves before flush_sends()
            buses[0].flush_sends()
            received: list = []
            while len(received) < len(sent):
                await buses[1].wait_inbox(1.0)
                received.extend(item.message for item in buses[1].drain_inbox())
            assert received == sent
            assert buses[1].counters["messages_received"] == 100
            assert dict(buses[1].dropped) == {}
            # A replica absent from the cluster (index 2) loses messages, counted, never raises.
            buses[0].send_to_replica(2, sent[0])
            assert buses[0].dropped["send-not-connected"] == 1
        finally:
            for bus in buses:
                await bus.close()

    run(body)


def test_client_replies_go_back_on_the_connection_of_its_latest_request() -> None:
    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(1))
        await bus.start()
        try:
            _, first_writer = await open_raw(peers[0])
            second_reader, second_writer = await open_raw(peers[0])
            first_writer.write(request(client=42, number=1))
            await first_writer.drain()
            await bus.wait_inbox(5.0)
            (inbound,) = bus.drain_inbox()
            assert inbound.message.header.client == 42
            # The client moved to another connection: its answer must follow it there.
            second_writer.write(request(client=42, number=2))
            await second_writer.drain()
            await bus.wait_inbox(5.0)
            assert [i.message.header.request for i in bus.drain_inbox()] == [2]
            reply = make_message(
                command=Command.REPLY, cluster=CLUSTER, replica=0, client=42, request=2, body=b'{"ok":true}'
            )
            bus.send_to_client(42, reply)
            bus.flush_sends()
            data = await asyncio.wait_for(second_reader.readexactly(reply.header.size), 5.0)
            assert data == reply.encode()
            bus.send_to_client(99, reply)
            assert bus.dropped["send-client-unknown"] == 1
            second_writer.close()
            await until(lambda: 42 not in bus._client_routes, what="route forgotten on close")
            first_writer.close()
        finally:
            await bus.close()

    run(body)


def _sealed_header(**fields: object) -> bytes:
    return Header(**fields).sealed().encode_raw()  # type: ignore[arg-type]


HOSTILE_CASES = {
    "random-bytes": (lambda: random.Random(5).randbytes(4096), "header-checksum"),
    "wrong-cluster": (lambda: request(client=1, number=1, cluster=CLUSTER + 1), "cluster"),
    "wrong-body": (
        lambda: request(client=1, number=1)[:-1] + b"X",
        "body-checksum",
    ),
    "oversized": (
        lambda: _sealed_header(
            command=Command.REQUEST, cluster=CLUSTER, size=MESSAGE_SIZE_MAX + 1, replica=CLIENT_REPLICA
        ),
        "size",
    ),
    "undersized": (
        lambda: _sealed_header(command=Command.REQUEST, cluster=CLUSTER, size=64, replica=CLIENT_REPLICA),
        "size",
    ),
    "bad-sender": (
        lambda: make_message(command=Command.PREPARE_OK, cluster=CLUSTER, replica=9).encode(),
        "replica",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_bytes_are_dropped_counted_and_the_sender_disconnected(case: str) -> None:
    make_bytes, reason = HOSTILE_CASES[case]

    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(2))
        await bus.start()
        try:
            reader, writer = await open_raw(peers[0])
            writer.write(make_bytes())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            assert await closed_by_peer(reader), "the bus kept a connection that sent garbage"
            assert bus.dropped[reason] == 1, dict(bus.dropped)
            assert bus.drain_inbox() == []
            writer.close()
            # The node still serves everyone else.
            _, good = await open_raw(peers[0])
            good.write(request(client=5, number=1))
            await good.drain()
            await bus.wait_inbox(5.0)
            assert [i.message.header.client for i in bus.drain_inbox()] == [5]
            good.close()
        finally:
            await bus.close()

    run(body)


def test_truncated_frame_then_eof_is_counted() -> None:
    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(3))
        await bus.start()
        try:
            _, writer = await open_raw(peers[0])
            frame = request(client=3, number=1)
            writer.write(frame + frame[: HEADER_SIZE + 3])
            await writer.drain()
            writer.write_eof()
            await until(lambda: bus.dropped["truncated"] == 1, what="truncated frame counted")
            assert [i.message.header.client for i in bus.drain_inbox()] == [3]
            writer.close()
        finally:
            await bus.close()

    run(body)


def test_slowloris_half_frame_is_cut_off_while_others_are_served() -> None:
    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(
            replica=0,
            peers=peers,
            cluster=CLUSTER,
            rng=random.Random(4),
            limits=BusLimits(frame_timeout_ms=300),
        )
        await bus.start()
        try:
            slow_reader, slow_writer = await open_raw(peers[0])
            frame = request(client=8, number=1)
            slow_writer.write(frame[:50])  # half a header, then silence
            await slow_writer.drain()
            _, fast = await open_raw(peers[0])
            fast.write(request(client=9, number=1))
            await fast.drain()
            await bus.wait_inbox(5.0)
            assert [i.message.header.client for i in bus.drain_inbox()] == [9]
            assert await closed_by_peer(slow_reader, timeout_s=5.0)
            assert bus.dropped["frame-timeout"] == 1
            slow_writer.close()
            fast.close()
        finally:
            await bus.close()

    run(body)


def test_byte_at_a_time_delivery_still_frames_correctly() -> None:
    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(6))
        await bus.start()
        try:
            _, writer = await open_raw(peers[0])
            frames = request(client=11, number=1) + request(client=11, number=2, key="kk")
            for i in range(len(frames)):
                writer.write(frames[i : i + 1])
                if i % 37 == 0:
                    await writer.drain()
                    await asyncio.sleep(0)
            await writer.drain()
            got: list[int] = []
            while len(got) < 2:
                await bus.wait_inbox(5.0)
                got.extend(i.message.header.request for i in bus.drain_inbox())
            assert got == [1, 2]
            assert dict(bus.dropped) == {}
            writer.close()
        finally:
            await bus.close()

    run(body)


def test_frames_larger_than_one_read_and_many_frames_per_read_arrive_whole() -> None:
    """The bus reads into a fixed buffer (vr.bus.RECEIVE_BUFFER_BYTES): a frame several buffers
    long, and hundreds of small frames written at once, both come out whole and in order."""

    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(7))
        await bus.start()
        try:
            _, writer = await open_raw(peers[0])
            big_body = json.dumps({"key": "big", "value": "x" * (3 * RECEIVE_BUFFER_BYTES)}).encode()
            big = make_message(
                command=Command.REQUEST,
                cluster=CLUSTER,
                body=big_body,
                replica=CLIENT_REPLICA,
                operation=Operation.WRITE,
                client=12,
                request=1,
            ).encode()
            small = b"".join(request(client=12, number=n) for n in range(2, 1002))
            assert len(small) > 2 * RECEIVE_BUFFER_BYTES
            writer.write(big + small)
            await writer.drain()
            got: list[tuple[int, int]] = []
            while len(got) < 1001:
                await bus.wait_inbox(5.0)
                got.extend((i.message.header.request, len(i.message.body)) for i in bus.drain_inbox())
            assert got[0] == (1, len(big_body))
            assert [number for number, _ in got] == list(range(1, 1002))
            assert dict(bus.dropped) == {}
            writer.close()
        finally:
            await bus.close()

    run(body)


def test_fuzzed_streams_never_crash_the_bus() -> None:
    """Valid frames with one random mutation each: every stream is either delivered or dropped."""

    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(
            replica=0,
            peers=peers,
            cluster=CLUSTER,
            rng=random.Random(7),
            limits=BusLimits(frame_timeout_ms=500),
        )
        await bus.start()
        rng = random.Random(1234)
        try:
            for trial in range(40):
                frame = bytearray(request(client=100 + trial, number=1))
                position = rng.randrange(len(frame))
                frame[position] ^= 1 << rng.randrange(8)
                reader, writer = await open_raw(peers[0])
                writer.write(bytes(frame))
                await writer.drain()
                writer.write_eof()
                await closed_by_peer(reader)
                writer.close()
            await until(lambda: sum(bus.dropped.values()) == 40, what="every mutated frame dropped")
            assert bus.drain_inbox() == []
            _, good = await open_raw(peers[0])
            good.write(request(client=5, number=1))
            await good.drain()
            await bus.wait_inbox(5.0)
            assert len(bus.drain_inbox()) == 1
            good.close()
        finally:
            await bus.close()

    run(body)


def test_send_queue_is_bounded() -> None:
    async def body() -> None:
        peers = make_peers(2)
        buses = [Bus(replica=i, peers=peers, cluster=CLUSTER, rng=random.Random(i)) for i in range(2)]
        for bus in buses:
            await bus.start()
        try:
            await until(lambda: buses[0].connected_replicas() == [1], what="dialled")
            message = make_message(command=Command.COMMIT, cluster=CLUSTER, replica=0)
            for _ in range(5000):
                buses[0].send_to_replica(1, message)
            assert buses[0].dropped["send-queue-full"] == 5000 - 4096
            buses[0].flush_sends()
            got = 0
            while got < 4096:
                await buses[1].wait_inbox(5.0)
                got += len(buses[1].drain_inbox())
            assert got == 4096
        finally:
            for bus in buses:
                await bus.close()

    run(body)


def test_a_restarted_peer_is_redialled() -> None:
    async def body() -> None:
        peers = make_peers(2)
        first = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(0))
        second = Bus(replica=1, peers=peers, cluster=CLUSTER, rng=random.Random(1))
        await first.start()
        await second.start()
        try:
            await until(lambda: first.connected_replicas() == [1], what="dialled")
            await second.close()
            await until(lambda: first.connected_replicas() == [], what="disconnect noticed")
            second = Bus(replica=1, peers=peers, cluster=CLUSTER, rng=random.Random(1))
            await second.start()
            await until(lambda: first.connected_replicas() == [1], what="redialled")
            message = make_message(command=Command.PING, cluster=CLUSTER, replica=0, extra=77)
            first.send_to_replica(1, message)
            first.flush_sends()
            await second.wait_inbox(5.0)
            assert [i.message for i in second.drain_inbox()] == [message]
        finally:
            await first.close()
            await second.close()

    run(body)


def test_sending_to_self_loops_back_through_the_inbox() -> None:
    async def body() -> None:
        peers = make_peers(3)
        bus = Bus(replica=2, peers=peers, cluster=CLUSTER, rng=random.Random(0))
        await bus.start()
        try:
            message = make_message(command=Command.PREPARE_OK, cluster=CLUSTER, replica=2)
            bus.send_to_replica(2, message)
            (inbound,) = bus.drain_inbox()
            assert inbound.message == message
            assert inbound.connection is None
            assert checksum(message.body) == message.header.checksum_body
        finally:
            await bus.close()

    run(body)


class BlackHole:
    """A listener whose accept queue is full, so the kernel drops further SYNs (like a partition)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.address = Address("127.0.0.1", self.listener.getsockname()[1])
        self._fill: list[socket.socket] = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self.listener.getsockname())
            self._fill.append(filler)

    def close(self) -> None:
        for filler in self._fill:
            filler.close()
        self.listener.close()


def test_a_dial_into_a_black_hole_times_out_and_is_retried() -> None:
    """Without a connect timeout a dropped SYN would hold the dialler for minutes after a heal."""

    async def body() -> None:
        hole = BlackHole()
        peers = [make_peers(1)[0], hole.address]
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(0), connect_timeout_s=0.2)
        await bus.start()
        try:
            await until(lambda: bus.counters["connect_timeouts"] >= 2, what="two connect timeouts")
            assert bus.connected_replicas() == []
        finally:
            await bus.close()
            hole.close()

    run(body)


def test_connections_abort_when_data_stays_unacknowledged() -> None:
    async def body() -> None:
        peers = make_peers(2)
        buses = [Bus(replica=i, peers=peers, cluster=CLUSTER, rng=random.Random(i)) for i in range(2)]
        for bus in buses:
            await bus.start()
        try:
            await until(lambda: buses[0].connected_replicas() == [1], what="dialled")
            connection = buses[0]._outbound[1]
            assert connection.transport is not None
            sock = connection.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == USER_TIMEOUT_MS
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        finally:
            for bus in buses:
                await bus.close()

    run(body)


# --- what a node gives the connections that reach it (BusLimits) ------------------------------


IdleConnections = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


async def open_idle(address: Address, count: int, *, source: str = "127.0.0.1") -> IdleConnections:
    """``count`` connections from ``source`` that never send a byte (keep the writers: a writer
    that is garbage-collected closes its connection)."""
    opened = []
    for _ in range(count):
        opened.append(await asyncio.open_connection(address.host, address.port, local_addr=(source, 0)))
    return opened


async def served(bus: Bus, address: Address, client: int, *, source: str = "127.0.0.1") -> bool:
    """A brand-new client connects, sends one request, and the bus delivers it."""
    _, writer = await asyncio.open_connection(address.host, address.port, local_addr=(source, 0))
    writer.write(request(client=client, number=1))
    await writer.drain()
    got: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while client not in got and loop.time() < deadline:
        await bus.wait_inbox(0.2)
        got.extend(i.message.header.client for i in bus.drain_inbox())
    writer.close()
    return client in got


def test_silent_connections_are_closed_after_the_first_frame_timeout() -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(first_frame_timeout_ms=300)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(11), limits=limits)
        await bus.start()
        try:
            idle = await open_idle(peers[0], 5)
            assert await served(bus, peers[0], client=21)  # a client that speaks is not silent
            for reader, _ in idle:
                assert await closed_by_peer(reader), "a silent connection was kept open"
            await until(lambda: bus.closed["silent"] == 5, what="five silent closes counted")
            snapshot = bus.snapshot_counters()
            assert snapshot["closed"] == {"silent": 5}
            assert snapshot["connections_by_kind"] == {"new": 0, "client": 0, "replica": 0}
        finally:
            await bus.close()

    run(body)


def test_at_the_host_bound_the_oldest_silent_connection_makes_room_for_a_new_client() -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(connections_max=40, connections_per_host_max=10, first_frame_timeout_ms=60_000)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(12), limits=limits)
        await bus.start()
        try:
            idle = await open_idle(peers[0], 25)
            await until(lambda: bus.counters["connections_accepted"] == 25, what="25 accepted")
            # The first 15 were evicted, oldest first, to keep the host at 10; the newest 10 stay.
            assert bus.closed["evicted-host-max"] == 15
            assert bus.snapshot_counters()["connections_open"] == 10
            for reader, _ in idle[:15]:
                assert await closed_by_peer(reader, timeout_s=2.0)
            for number in range(5):
                assert await served(bus, peers[0], client=100 + number), "a new client was locked out"
            assert bus.snapshot_counters()["connections_open"] <= 10
            assert "refused-host-max" not in bus.closed
        finally:
            await bus.close()

    run(body)


def test_at_the_total_bound_silent_connections_go_before_clients() -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(connections_max=12, connections_per_host_max=10, first_frame_timeout_ms=60_000)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(13), limits=limits)
        await bus.start()
        try:
            _, talker = await asyncio.open_connection(peers[0].host, peers[0].port)
            talker.write(request(client=300, number=1))
            await talker.drain()
            await until(lambda: bus.snapshot_counters()["connections_by_kind"]["client"] == 1, what="client")
            idle = await open_idle(peers[0], 8, source="127.0.0.5")
            idle += await open_idle(peers[0], 8, source="127.0.0.6")
            await until(lambda: bus.counters["connections_accepted"] == 17, what="17 accepted")
            assert bus.closed["evicted-connections-max"] == 5
            assert bus.snapshot_counters()["connections_open"] == 12
            # The client that spoke is still connected and still served on its connection.
            talker.write(request(client=300, number=2))
            await talker.drain()
            await until(lambda: any(i.message.header.request == 2 for i in bus.drain_inbox()), what="served")
            talker.close()
        finally:
            await bus.close()

    run(body)


def test_a_replica_gets_through_a_host_full_of_silent_connections_and_is_never_evicted() -> None:
    async def body() -> None:
        peers = [Address("127.0.0.1", free_ports(1)[0]), Address("127.0.0.2", free_ports(1, "127.0.0.2")[0])]
        limits = BusLimits(connections_per_host_max=8, first_frame_timeout_ms=60_000)
        first = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(14), limits=limits)
        await first.start()
        second = Bus(replica=1, peers=peers, cluster=CLUSTER, rng=random.Random(15))
        try:
            idle = await open_idle(peers[0], 8, source="127.0.0.2")  # the peer's own address, full
            await second.start()
            await until(lambda: first.counters["hellos_received"] == 1, what="the replica's hello")
            idle += await open_idle(peers[0], 20, source="127.0.0.2")  # more silence from that address
            await until(lambda: first.counters["connections_accepted"] == 29, what="29 accepted")
            kinds = first.snapshot_counters()["connections_by_kind"]
            assert kinds == {"new": 7, "client": 0, "replica": 1}, kinds
            message = make_message(command=Command.COMMIT, cluster=CLUSTER, replica=1, commit=5)
            second.send_to_replica(0, message)
            second.flush_sends()
            await first.wait_inbox(5.0)
            assert [i.message for i in first.drain_inbox()] == [message]  # the hello is not delivered
            assert dict(first.dropped) == {}
        finally:
            await second.close()
            await first.close()

    run(body)


def test_a_replica_hello_from_another_address_earns_no_protection() -> None:
    async def body() -> None:
        peers = [Address("127.0.0.1", free_ports(1)[0]), Address("127.0.0.2", free_ports(1, "127.0.0.2")[0])]
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(16))
        await bus.start()
        try:
            _, writer = await asyncio.open_connection(
                peers[0].host, peers[0].port, local_addr=("127.0.0.9", 0)
            )
            writer.write(make_message(command=Command.PING, cluster=CLUSTER, replica=1).encode())
            await writer.drain()
            await bus.wait_inbox(5.0)
            assert [i.message.header.replica for i in bus.drain_inbox()] == [1]  # delivered as any PING
            assert bus.counters["replica_claims_unverified"] == 1
            assert bus.snapshot_counters()["connections_by_kind"] == {"new": 0, "client": 1, "replica": 0}
            writer.close()
        finally:
            await bus.close()

    run(body)


def test_unfinished_frames_share_one_memory_budget() -> None:
    """Ten connections each send 600 KiB of a 1 MiB frame and hang: the bus holds at most its
    budget, sheds the largest unfinished frames (counted), and still serves a new client."""

    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(partial_frames_max_bytes=2 * MESSAGE_SIZE_MAX, frame_timeout_ms=60_000)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(17), limits=limits)
        await bus.start()
        frame = make_message(
            command=Command.REQUEST,
            cluster=CLUSTER,
            body=b"x" * (MESSAGE_SIZE_MAX - HEADER_SIZE),
            replica=CLIENT_REPLICA,
            operation=Operation.WRITE,
            client=500,
            request=1,
        ).encode()
        writers = []
        peak = 0
        try:
            for _ in range(10):
                _, writer = await open_raw(peers[0])
                writer.write(frame[: 600 * 1024])
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                writers.append(writer)
                await until(lambda: bus.counters["bytes_received"] % (600 * 1024) == 0, what="read")
                peak = max(peak, bus.partial_bytes)
            await until(lambda: bus.counters["bytes_received"] == 10 * 600 * 1024, what="all read")
            assert peak <= limits.partial_frames_max_bytes
            assert bus.partial_bytes <= limits.partial_frames_max_bytes
            assert bus.dropped["partial-frames-budget"] == 7  # 3 x 600 KiB fit in 2 MiB
            assert bus.closed["partial-frames-budget"] == 7
            assert await served(bus, peers[0], client=501)
            for writer in writers:
                writer.close()
            await until(lambda: bus.partial_bytes == 0, what="budget returned on close")
        finally:
            await bus.close()

    run(body)


def test_a_frame_that_never_completes_times_out_and_returns_its_bytes() -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(frame_timeout_ms=300)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(18), limits=limits)
        await bus.start()
        try:
            reader, writer = await open_raw(peers[0])
            writer.write(request(client=600, number=1) + request(client=600, number=2)[:-10])
            await writer.drain()
            await bus.wait_inbox(5.0)
            assert [i.message.header.request for i in bus.drain_inbox()] == [1]
            assert await closed_by_peer(reader)
            assert bus.dropped["frame-timeout"] == 1 and bus.closed["frame-timeout"] == 1
            assert bus.partial_bytes == 0
            writer.close()
        finally:
            await bus.close()

    run(body)


def test_a_garbage_flood_is_counted_exactly_and_logged_within_a_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(drop_log_burst=5, drop_log_interval_ms=60_000)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(19), limits=limits)
        await bus.start()
        try:
            for _ in range(300):
                reader, writer = await open_raw(peers[0])
                writer.write(b"\xff" * 200)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                assert await closed_by_peer(reader)
                writer.close()
            await until(lambda: bus.dropped["header-checksum"] == 300, what="300 drops counted")
            assert bus.closed["invalid-frame"] == 300
            assert bus.snapshot_counters()["log_lines_suppressed"] == 295
        finally:
            await bus.close()

    with caplog.at_level(logging.INFO, logger="vr.bus"):
        run(body)
    drop_lines = [r for r in caplog.records if "bus=drop" in r.getMessage()]
    assert len(drop_lines) == 5
    summaries = [r.getMessage() for r in caplog.records if "log=suppressed" in r.getMessage()]
    assert summaries == ["log=suppressed key=drop:header-checksum suppressed=295 interval_ms=60000 logged=5"]


def test_with_no_silent_connection_left_the_least_recently_active_client_makes_room() -> None:
    async def body() -> None:
        peers = make_peers(3)
        limits = BusLimits(connections_max=4, connections_per_host_max=4, first_frame_timeout_ms=60_000)
        bus = Bus(replica=0, peers=peers, cluster=CLUSTER, rng=random.Random(20), limits=limits)
        await bus.start()
        try:
            clients = []
            for number in range(4):
                reader, writer = await open_raw(peers[0])
                writer.write(request(client=700 + number, number=1))
                await writer.drain()
                await until(lambda n=number: bus.counters["messages_received"] == n + 1, what="request")
                clients.append((reader, writer))
                await asyncio.sleep(0.3)  # past a sweep: the bus's coarse clock tells them apart
            _, first = clients[0]
            first.write(request(client=700, number=2))  # the oldest becomes the most recently active
            await first.drain()
            await until(lambda: bus.counters["messages_received"] == 5, what="second request")
            await asyncio.sleep(0.3)
            assert await served(bus, peers[0], client=800)  # a fifth client: someone must go
            assert bus.closed == {"evicted-host-max": 1}
            evicted = await asyncio.wait_for(clients[1][0].read(), 5.0)
            assert evicted == b"", "the least recently active client was not the one evicted"
            for _, writer in (clients[0], clients[2], clients[3]):
                assert not writer.is_closing()
            bus.drain_inbox()
            first.write(request(client=700, number=3))  # and the others are still served
            await first.drain()
            await until(lambda: any(i.message.header.request == 3 for i in bus.drain_inbox()), what="served")
        finally:
            await bus.close()

    run(body)


@pytest.mark.parametrize(("soft", "expected"), [(20000, 2048), (1024, 512), (256, 128)])
def test_the_connection_bound_fits_the_file_descriptor_limit(soft: int, expected: int) -> None:
    """Past RLIMIT_NOFILE, accept() fails and the event loop stops accepting for a second at a time
    (everyone locked out), so the bound in force is lowered to leave descriptors for the rest."""
    import resource

    from vr.bus import fd_bounded_connections

    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < soft:
        pytest.skip(f"hard RLIMIT_NOFILE {hard} < {soft}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert fd_bounded_connections(BusLimits().connections_max) == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))
