"""The client's promises, against real TCP endpoints that answer from a script.

The endpoints are real `vr.bus.Bus` instances on loopback, run in a background
event loop; a per-test script decides what each "replica" answers (reply,
redirect, silence, hang up). This isolates the client's own logic: matching a
reply to its request, retrying the same bytes, following a redirect, and
telling a definite failure apart from an unknown outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.vr.test_bus import BlackHole, free_ports
from vr.bus import Address, Bus, Inbound
from vr.client import Client, RequestFailed, RequestIndeterminate
from vr.message import CHECKSUM_SIZE, Command, Message, make_message

CLUSTER = 3

Script = Callable[[int, Message], "Answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a scripted replica does with one message: send these, or hang up."""

    messages: tuple[Message, ...] = ()
    hang_up: bool = False


SILENCE = Answer()


@dataclass
class ScriptedReplicas:
    """N real buses in a background loop; every received message goes through ``script``."""

    count: int
    script: Script
    peers: list[Address] = field(default_factory=list)
    received: list[tuple[int, bytes]] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    listening: tuple[int, ...] | None = None

    def __enter__(self) -> ScriptedReplicas:
        self.peers = [Address("127.0.0.1", port) for port in free_ports(self.count)]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "scripted replicas did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        which = self.listening if self.listening is not None else tuple(range(self.count))
        buses = {i: Bus(replica=i, peers=self.peers, cluster=CLUSTER, rng=random.Random(i)) for i in which}
        for bus in buses.values():
            await bus.start()
        self._ready.set()
        tasks = [asyncio.create_task(self._serve(i, bus)) for i, bus in buses.items()]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        for bus in buses.values():
            await bus.close()

    async def _serve(self, replica: int, bus: Bus) -> None:
        while True:
            await bus.wait_inbox(0.05)
            for inbound in bus.drain_inbox():
                self._answer(replica, bus, inbound)
            bus.flush_sends()

    def _answer(self, replica: int, bus: Bus, inbound: Inbound) -> None:
        self.received.append((replica, inbound.message.encode()))
        answer = self.script(replica, inbound.message)
        if answer.hang_up and inbound.connection is not None:
            inbound.connection.close()
            return
        for message in answer.messages:
            bus.reply_on(inbound.connection, message)

    def requests(self) -> list[tuple[int, bytes]]:
        return [(i, data) for i, data in self.received if data[76] == Command.REQUEST]


def reply_to(
    request: Message, body: dict, *, replica: int = 0, view: int = 0, context: bytes | None = None
) -> Message:
    header = request.header
    return make_message(
        command=Command.REPLY,
        cluster=CLUSTER,
        body=json.dumps(body).encode(),
        replica=replica,
        view=view,
        client=header.client,
        request=header.request,
        context=header.checksum if context is None else context,
    )


def kv_script(replica_answering: int = 0, *, view: int = 0) -> Script:
    """A tiny register store at one replica (the test's stand-in for the cluster's state machine)."""
    store: dict[str, object] = {}

    def script(replica: int, message: Message) -> Answer:
        if message.command != Command.REQUEST or replica != replica_answering:
            return SILENCE
        request = json.loads(message.body)
        key = request["key"]
        if "old" in request:
            if store.get(key) != request["old"]:
                return Answer(
                    (
                        reply_to(
                            message,
                            {"ok": False, "error": "cas-mismatch", "value": store.get(key)},
                            replica=replica,
                            view=view,
                        ),
                    )
                )
            store[key] = request["new"]
            return Answer((reply_to(message, {"ok": True, "value": None}, replica=replica, view=view),))
        if "value" in request:
            store[key] = request["value"]
            return Answer((reply_to(message, {"ok": True, "value": None}, replica=replica, view=view),))
        return Answer((reply_to(message, {"ok": True, "value": store.get(key)}, replica=replica, view=view),))

    return script


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(peers: list[Address], **kwargs: object) -> Client:
        options: dict[str, object] = {"cluster": CLUSTER, "timeout_s": 0.2, "seed": 1}
        options.update(kwargs)
        client = Client(peers, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_write_read_cas_round_trip(make_client: Callable[..., Client]) -> None:
    with ScriptedReplicas(3, kv_script()) as replicas:
        client = make_client(replicas.peers)
        assert client.write("x", 1) is None
        assert client.read("x") == 1
        assert client.cas("x", 1, 2) is None
        with pytest.raises(RequestFailed) as failure:
            client.cas("x", 1, 3)
        assert failure.value.error == "cas-mismatch"
        assert failure.value.value == 2
        assert client.read("x") == 2
        numbers = [Message_from(data).header.request for _, data in replicas.requests()]
        assert numbers == [1, 2, 3, 4, 5], "request numbers start at 1 and rise by one per call"


def Message_from(data: bytes) -> Message:
    from vr.message import decode_message

    return decode_message(data, cluster=CLUSTER)


def test_a_reply_with_the_wrong_request_checksum_is_not_accepted(make_client: Callable[..., Client]) -> None:
    """Same client and number but another request's checksum: an answer to different bytes."""

    def script(replica: int, message: Message) -> Answer:
        if replica != 0 or message.command != Command.REQUEST:
            return SILENCE
        wrong = reply_to(message, {"ok": True, "value": "forged"}, context=bytes(CHECKSUM_SIZE))
        right = reply_to(message, {"ok": True, "value": "real"})
        return Answer((wrong, right))

    with ScriptedReplicas(3, script) as replicas:
        assert make_client(replicas.peers).read("k") == "real"


def test_timeout_retries_the_same_bytes_to_every_replica(make_client: Callable[..., Client]) -> None:
    copies: list[int] = []

    def script(replica: int, message: Message) -> Answer:
        if message.command != Command.REQUEST:
            return SILENCE
        copies.append(replica)
        if replica != 2:
            return SILENCE  # the believed primary (0) never answers; only a retry can reach 2
        return Answer((reply_to(message, {"ok": True, "value": 7}, replica=replica),))

    with ScriptedReplicas(3, script) as replicas:
        client = make_client(replicas.peers, timeout_s=0.2, deadline_s=5.0)
        assert client.read("k") == 7
        sent = replicas.requests()
        assert sent[0][0] == 0, "the first copy goes to the believed primary (view 0 -> replica 0)"
        assert {data for _, data in sent} == {sent[0][1]}, "every retry is byte-identical"
        assert {i for i, _ in sent} >= {0, 2}, "retries reach the other replicas"
        assert client.retries >= 1


def test_redirect_moves_the_client_to_the_new_primary(make_client: Callable[..., Client]) -> None:
    def script(replica: int, message: Message) -> Answer:
        if message.command != Command.REQUEST:
            return SILENCE
        if replica == 0:
            header = message.header
            redirect = make_message(
                command=Command.REDIRECT,
                cluster=CLUSTER,
                replica=0,
                view=4,
                client=header.client,
                request=header.request,
            )
            return Answer((redirect,))
        if replica == 1:
            return Answer((reply_to(message, {"ok": True, "value": "from-1"}, replica=1, view=4),))
        return SILENCE

    with ScriptedReplicas(3, script) as replicas:
        client = make_client(replicas.peers, timeout_s=5.0, deadline_s=10.0)
        assert client.read("k") == "from-1"
        assert client.view == 4 and client.primary == 1
        assert client.retries == 0, "the redirect, not a timeout, moved the request"
        assert [i for i, _ in replicas.requests()][:2] == [0, 1]


def test_silence_after_sending_is_indeterminate(make_client: Callable[..., Client]) -> None:
    with ScriptedReplicas(3, lambda replica, message: SILENCE) as replicas:
        client = make_client(replicas.peers, timeout_s=0.1, deadline_s=0.5)
        with pytest.raises(RequestIndeterminate) as unknown:
            client.write("k", 1)
        assert "after sending" in unknown.value.reason
        assert len(replicas.requests()) >= 2


def test_connection_lost_after_sending_is_indeterminate(make_client: Callable[..., Client]) -> None:
    hang_up = Answer(hang_up=True)
    with ScriptedReplicas(3, lambda replica, message: hang_up) as replicas:
        client = make_client(replicas.peers, timeout_s=0.1, deadline_s=0.6)
        with pytest.raises(RequestIndeterminate) as unknown:
            client.append("k", "x")
        assert "closed the connection" in unknown.value.reason


def test_nothing_listening_is_a_definite_failure(make_client: Callable[..., Client]) -> None:
    peers = [Address("127.0.0.1", port) for port in free_ports(3)]  # closed ports: connection refused
    client = make_client(peers, timeout_s=0.1, deadline_s=0.5)
    with pytest.raises(RequestFailed) as failure:
        client.write("k", 1)
    assert failure.value.error == "unavailable"


def test_a_request_too_large_for_one_prepare_is_refused_before_sending(
    make_client: Callable[..., Client],
) -> None:
    with ScriptedReplicas(3, kv_script()) as replicas:
        client = make_client(replicas.peers)
        with pytest.raises(RequestFailed) as failure:
            client.write("k", "x" * 70_000)
        assert failure.value.error == "too-large"
        assert replicas.requests() == []
        assert client.write("k", "small") is None, "the client is still usable"


def test_status_returns_the_replica_json(make_client: Callable[..., Client]) -> None:
    def script(replica: int, message: Message) -> Answer:
        if message.command != Command.STATUS_REQUEST:
            return SILENCE
        header = message.header
        body = json.dumps({"replica": replica, "status": "normal", "view": 2}).encode()
        status = make_message(
            command=Command.STATUS_REPLY,
            cluster=CLUSTER,
            body=body,
            replica=replica,
            client=header.client,
            request=header.request,
            context=header.checksum,
        )
        return Answer((status,))

    with ScriptedReplicas(3, script) as replicas:
        client = make_client(replicas.peers)
        assert client.status(2) == {"replica": 2, "status": "normal", "view": 2}
        with pytest.raises(RequestFailed):
            client.status(3)


def test_status_of_a_silent_replica_is_indeterminate(make_client: Callable[..., Client]) -> None:
    with (
        ScriptedReplicas(3, lambda replica, message: SILENCE) as replicas,
        pytest.raises(RequestIndeterminate),
    ):
        make_client(replicas.peers, timeout_s=0.2).status(1)


def test_a_dead_primary_does_not_stall_the_retry_to_the_others(make_client: Callable[..., Client]) -> None:
    scripted = ScriptedReplicas(3, kv_script(replica_answering=2))
    scripted.listening = (1, 2)  # replica 0 (the believed primary) refuses connections
    with scripted as replicas:
        client = make_client(replicas.peers, timeout_s=0.1, deadline_s=5.0)
        assert client.write("k", 1) is None
        assert client.read("k") == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vr.client", *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_cli_exit_codes_and_json_output() -> None:
    with ScriptedReplicas(3, kv_script()) as replicas:
        peers = ",".join(str(p) for p in replicas.peers)
        common = ["--peers", peers, "--cluster", str(CLUSTER), "--timeout", "0.2"]
        done = run_cli(*common, "write", "k", "5")
        assert (done.returncode, json.loads(done.stdout)) == (0, {"ok": True, "value": None})
        done = run_cli(*common, "read", "k")
        assert json.loads(done.stdout) == {"ok": True, "value": 5}, "CLI values are JSON when they parse"
        done = run_cli(*common, "cas", "k", "4", "6")
        assert done.returncode == 1
        assert json.loads(done.stdout) == {"ok": False, "error": "cas-mismatch", "value": 5}
    with ScriptedReplicas(3, lambda replica, message: SILENCE) as replicas:
        peers = ",".join(str(p) for p in replicas.peers)
        done = run_cli(
            "--peers",
            peers,
            "--cluster",
            str(CLUSTER),
            "--timeout",
            "0.1",
            "--deadline",
            "0.4",
            "append",
            "k",
            "x",
        )
        assert done.returncode == 2
        assert json.loads(done.stdout)["ok"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["read", "k"],  # no --peers
        ["--peers", "127.0.0.1:1", "frobnicate", "k"],
        ["--peers", "nonsense", "read", "k"],
        ["--peers", "127.0.0.1:1", "write", "k"],
        ["--peers", "127.0.0.1:1", "status", "--replica", "5"],
        ["--peers", "127.0.0.1:1", "--timeout", "-1", "read", "k"],
    ],
)
def test_cli_bad_usage_is_one_paragraph_exit_3(argv: list[str]) -> None:
    done = run_cli(*argv)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, "one paragraph"
    assert done.stderr.startswith("error:")


def test_a_black_holed_primary_does_not_hold_the_client(make_client: Callable[..., Client]) -> None:
    """Replica 0 drops SYNs (full accept queue): the client gives up on it and is served by 1."""
    hole = BlackHole()
    try:
        with ScriptedReplicas(3, kv_script(replica_answering=1)) as replicas:
            peers = [hole.address, *replicas.peers[1:]]
            client = make_client(peers, timeout_s=0.2, deadline_s=5.0)
            assert client.write("k", 1) is None
            assert client.read("k") == 1
            channel = client._channels[0]
            for _ in range(3):  # every attempt gives up on the black hole after one timeout
                client.read("k")
            assert channel.error is not None and "no answer within" in channel.error
    finally:
        hole.close()


def test_a_refused_primary_fails_over_at_once_not_after_a_timeout(make_client: Callable[..., Client]) -> None:
    """Replica 0 (believed primary) has no listener: its refusal triggers the retry to all at once."""
    scripted = ScriptedReplicas(3, kv_script(replica_answering=1))
    scripted.listening = (1, 2)
    with scripted as replicas:
        client = make_client(replicas.peers, timeout_s=30.0, deadline_s=60.0)
        assert client.write("k", 1) is None  # would take 30 s if the refusal waited for the timeout
        assert client.retries == 1
        assert "errno" in (client._channels[0].error or "") or "refused" in (client._channels[0].error or "")
