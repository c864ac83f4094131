"""A frame-aware proxy on VR's replica-to-replica links: delay, reorder, duplicate, replay, drop.

TCP never duplicates, replays or reorders, so a replica's handling of a late
or repeated PrepareOk or view-change vote is unreachable with packet faults
alone. This proxy sits on every replica-to-replica connection of a run and,
when told to, misbehaves the way an asynchronous network may: it holds frames
back (delay), swaps neighbours (reorder), sends a frame twice (duplicate),
sends again a frame it forwarded earlier on the same link (replay) or loses it
(drop; with probability 1 a cut of the chosen links that leaves their TCP
connections up, which the messages nemesis moves from node to node to make
partitions flap faster than a packet filter is rewritten).

How it sits in the path, without changing the nodes: an nftables ``nat``
rule in the run's network namespace redirects each new TCP connection from a
node's address to another node's listening port to the proxy (``dnat``); the
proxy reads the original destination back (``SO_ORIGINAL_DST``) and dials it
from the *source node's own address*, so the partition and loss nemeses,
which match node addresses and ports, still cut the link; its own outgoing
connections carry a firewall mark the redirect rule skips. It knows only
VR's framing (the 128-byte header whose ``size`` field gives the frame's
length; ``command``, ``view`` and ``op`` are read for the record), never the
protocol. It runs on its own asyncio loop in a thread of the controller and
dies with the run's namespace. Every decision comes from a seeded RNG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from vr.message import HEADER_SIZE, MESSAGE_SIZE_MAX, Command

logger = logging.getLogger(__name__)

MODES = ("delay", "reorder", "duplicate", "replay", "drop")
PROXY_HOST = "127.0.0.1"  # the controller's address in a local run
PROXY_PORT = 7099
FIREWALL_MARK = 0x5241  # "RA": the proxy's own connections, which the redirect rule skips
NFT_TABLE = "ratchet_proxy"
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
SO_MARK = 36
REPLAY_HISTORY = 64  # frames remembered per link for replays
REORDER_HOLD_S = 0.1  # a held frame goes out after this long if no other frame overtakes it
_SIZE_OFFSET = 72  # vr.message header: u32 size (header + body)
_COMMAND_OFFSET = 76
_VIEW_OP = struct.Struct("<QQ")  # view at 80, op at 88


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do to frames on some links: one mode, a probability per frame, a delay bound."""

    links: frozenset[tuple[str, str]]  # (from node, to node)
    mode: str
    probability: float
    delay_ms_max: int
    seed: int


@dataclass(slots=True)
class Link:
    """Counters and recent frames of one directed link (kept across reconnections)."""

    frames: int = 0
    bytes: int = 0
    delayed: int = 0
    reordered: int = 0
    duplicated: int = 0
    replayed: int = 0
    dropped: int = 0
    history: deque[bytes] = field(default_factory=lambda: deque(maxlen=REPLAY_HISTORY))
    by_command: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "bytes": self.bytes,
            "delayed": self.delayed,
            "reordered": self.reordered,
            "duplicated": self.duplicated,
            "replayed": self.replayed,
            "dropped": self.dropped,
        }


def frame_size(header: bytes) -> int | None:
    """The frame's whole length from its header, or None when it cannot be a VR frame."""
    (size,) = struct.unpack_from("<I", header, _SIZE_OFFSET)
    return size if HEADER_SIZE <= size <= MESSAGE_SIZE_MAX else None


def describe(frame: bytes) -> str:
    try:
        command = Command(frame[_COMMAND_OFFSET]).name.lower()
    except ValueError:
        command = f"command-{frame[_COMMAND_OFFSET]}"
    view, op = _VIEW_OP.unpack_from(frame, 80)
    return f"{command} view {view} op {op}"


def nft_rules(endpoints: Mapping[str, tuple[str, int]], *, proxy: tuple[str, int]) -> str:
    """The redirect: new connections from a node's address to another node's port go to the proxy."""
    sources = ", ".join(sorted({host for host, _ in endpoints.values()}))
    targets = ", ".join(f"{host} . {port}" for host, port in sorted(endpoints.values()))
    return (
        f"table ip {NFT_TABLE} {{\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    meta mark != {FIREWALL_MARK:#x} ip saddr {{ {sources} }} ip daddr . tcp dport {{ {targets} }} "
        f"dnat to {proxy[0]}:{proxy[1]};\n"
        "  }\n"
        "}\n"
    )


def _nft(script: str) -> None:
    proc = subprocess.run(
        ["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=10, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft refused the message proxy's rules: {proc.stderr.strip()}")


class MessageProxy:
    """Start with :meth:`install` before any node starts; :meth:`close` after the nodes stop."""

    def __init__(
        self, endpoints: Mapping[str, tuple[str, int]], *, listen: tuple[str, int] = (PROXY_HOST, PROXY_PORT)
    ):
        self.endpoints = dict(endpoints)
        self.listen = listen
        self._by_address = {address: node for node, address in self.endpoints.items()}
        self._by_host = {host: node for node, (host, _) in self.endpoints.items()}
        self.links: dict[tuple[str, str], Link] = {}
        self._plan: Plan | None = None
        self._rng = random.Random(0)
        self._lock = threading.Lock()  # plan, rng and counters: read by the controller, used on the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.installed = False

    # -- control (controller threads) --------------------------------------------------------

    def install(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(
                        self._handle, *self.listen, reuse_address=True, limit=MESSAGE_SIZE_MAX * 2
                    )
                )
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=serve, name="vr-message-proxy", daemon=True)
        self._thread.start()
        ready.wait(timeout=10)
        if failure:
            raise RuntimeError(f"the message proxy could not listen on {self.listen}: {failure[0]}")
        _nft(nft_rules(self.endpoints, proxy=self.listen))
        self.installed = True

    def set_plan(
        self,
        *,
        links: frozenset[tuple[str, str]],
        mode: str,
        probability: float,
        delay_ms_max: int,
        seed: int,
    ) -> None:
        """From now on, frames on ``links`` are subject to ``mode`` with this probability each."""
        if mode not in MODES:
            raise ValueError(f"unknown message fault {mode!r}; known: {', '.join(MODES)}")
        with self._lock:
            self._plan = Plan(links, mode, probability, delay_ms_max, seed)
            self._rng = random.Random(seed)

    def clear(self) -> None:
        """Every frame goes on unchanged again (frames already delayed still arrive late)."""
        with self._lock:
            self._plan = None

    def counters(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {f"{a}->{b}": link.counts() for (a, b), link in sorted(self.links.items())}

    def close(self) -> list[str]:
        """Remove the redirect and stop the proxy; returns what was done (for the teardown record)."""
        done = []
        if self.installed:
            with contextlib.suppress(RuntimeError, OSError, subprocess.SubprocessError):
                _nft(f"delete table ip {NFT_TABLE}\n")
                done.append("removed the message proxy's redirect")
            self.installed = False
        loop = self._loop
        if loop is not None and self._thread is not None:

            async def shut() -> None:
                if self._server is not None:
                    self._server.close()
                for writer in list(self._writers):
                    writer.close()

            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=5)
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5)
            self._loop = None
            done.append("stopped the message proxy")
        return done

    # -- the proxy (its own loop) -------------------------------------------------------------

    def _link(self, key: tuple[str, str]) -> Link:
        with self._lock:
            return self.links.setdefault(key, Link())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            sock = writer.get_extra_info("socket")
            peer_host = writer.get_extra_info("peername")[0]
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, packed = struct.unpack("!2xH4s8x", raw)
            target = (socket.inet_ntoa(packed), port)
            source, destination = self._by_host.get(peer_host), self._by_address.get(target)
            if source is None or destination is None:
                return
            out = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            out.setsockopt(socket.SOL_SOCKET, SO_MARK, FIREWALL_MARK)
            out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            out.bind((peer_host, 0))  # the source node's address: partitions still match
            out.setblocking(False)
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(out, target), timeout=5)
            except (OSError, TimeoutError):
                out.close()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                sock=out, limit=MESSAGE_SIZE_MAX * 2
            )
            self._writers.add(upstream_writer)
            forward = asyncio.create_task(self._forward(reader, upstream_writer, (source, destination)))
            backward = asyncio.create_task(self._copy(upstream_reader, writer))
            await asyncio.wait({forward, backward}, return_when=asyncio.FIRST_COMPLETED)
            for task in (forward, backward):
                task.cancel()
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _copy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: tuple[str, str]
    ) -> None:
        """Frames from the dialing node to its peer, through the plan; a per-link send queue keeps order."""
        link = self._link(key)
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer, key, link))
        held: list[bytes] = []
        loop = asyncio.get_running_loop()
        try:
            while True:
                header = await reader.readexactly(HEADER_SIZE)
                size = frame_size(header)
                if size is None:  # not a VR frame: pass everything on untouched from here
                    queue.put_nowait((0.0, header))
                    while data := await reader.read(65536):
                        queue.put_nowait((0.0, data))
                    return
                frame = header + await reader.readexactly(size - HEADER_SIZE)
                was_holding = bool(held)
                for due_s, data in self._decide(key, link, frame, held):
                    queue.put_nowait((due_s, data))
                if held and not was_holding:  # sent on after a while if nothing overtakes it
                    loop.call_later(REORDER_HOLD_S, self._release, held, queue)
        finally:
            self._release(held, queue)
            sender.cancel()

    @staticmethod
    def _release(held: list[bytes], queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        while held:
            queue.put_nowait((0.0, held.pop(0)))

    def _decide(
        self, key: tuple[str, str], link: Link, frame: bytes, held: list[bytes]
    ) -> list[tuple[float, bytes]]:
        """What goes out for this frame, with the earliest time each may be sent (monotonic s)."""
        with self._lock:
            link.frames += 1
            link.bytes += len(frame)
            name = describe(frame).split(" ", 1)[0]
            link.by_command[name] = link.by_command.get(name, 0) + 1
            plan = self._plan
            out: list[tuple[float, bytes]] = []
            if plan is not None and plan.mode == "drop" and key not in plan.links and plan.delay_ms_max:
                # A cut elsewhere on a slow network: the other links lag (order kept), so a cut that
                # moves onto them loses what they still had in flight (see _send).
                link.delayed += 1
                out = [(time.monotonic() + self._rng.uniform(0, plan.delay_ms_max) / 1000, frame)]
                out += [(0.0, h) for h in held]
                held.clear()
            elif plan is None or key not in plan.links or self._rng.random() >= plan.probability:
                if held:  # this frame overtakes the held one
                    link.reordered += 1
                out = [(0.0, frame)] + [(0.0, h) for h in held]
                held.clear()
            elif plan.mode == "delay":
                link.delayed += 1
                out = [(time.monotonic() + self._rng.uniform(0, plan.delay_ms_max) / 1000, frame)]
            elif plan.mode == "reorder":
                if held:  # this frame overtakes the held one
                    out = [(0.0, frame)] + [(0.0, h) for h in held]
                    held.clear()
                    link.reordered += 1
                else:
                    held.append(frame)
            elif plan.mode == "duplicate":
                link.duplicated += 1
                out = [(0.0, frame), (0.0, frame)]
            elif plan.mode == "drop":
                link.dropped += 1
                return []  # lost: never sent, so never replayed either
            elif plan.mode == "replay" and link.history:
                link.replayed += 1
                out = [(0.0, frame), (0.0, self._rng.choice(link.history))]
            else:
                out = [(0.0, frame)]
            link.history.append(frame)
            return out

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        key: tuple[str, str],
        link: Link,
    ) -> None:
        """Writes in queue order; a delayed frame holds back those behind it (TCP-like: late, not reordered).

        A frame that waited while a full cut (drop with probability 1) came onto its link is lost
        with it, as a packet in flight on a link that is cut."""
        try:
            while True:
                due_s, data = await queue.get()
                wait_s = due_s - time.monotonic()
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
                    with self._lock:
                        plan = self._plan
                        if plan and plan.mode == "drop" and plan.probability >= 1 and key in plan.links:
                            link.dropped += 1
                            queue.task_done()
                            continue
                writer.write(data)
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.drain()
                queue.task_done()
        except asyncio.CancelledError:
            return


def self_test() -> str:
    """Prove the redirect works here (run inside a throwaway network namespace): one frame through it."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
    endpoints = {"a": ("127.0.0.2", 7201), "b": ("127.0.0.3", 7202)}
    server = socket.socket()
    server.bind(endpoints["b"])
    server.listen()
    proxy = MessageProxy(endpoints, listen=("127.0.0.1", 7299))
    proxy.install()
    proxy.set_plan(links=frozenset({("a", "b")}), mode="duplicate", probability=1.0, delay_ms_max=0, seed=1)
    try:
        frame = bytearray(HEADER_SIZE + 4)
        struct.pack_into("<I", frame, _SIZE_OFFSET, len(frame))
        client = socket.socket()
        client.bind((endpoints["a"][0], 0))
        client.settimeout(5)
        client.connect(endpoints["b"])
        client.sendall(frame)
        server.settimeout(5)
        conn, peer = server.accept()
        conn.settimeout(5)
        got = b""
        while len(got) < 2 * len(frame):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        if got != bytes(frame) * 2 or peer[0] != endpoints["a"][0]:
            raise RuntimeError(f"the frame came through as {len(got)} bytes from {peer[0]}")
        return "frames redirected through the proxy and duplicated; source address kept"
    finally:
        proxy.close()


if __name__ == "__main__":
    import sys

    try:
        print(self_test())
    except Exception as exc:
        print(f"message proxy self-test failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
