"""What hostile connections cost a real 3-node VR cluster: idle floods and hanging partial frames.

Usage: ``python bench/vr_hostile_connections.py [--idle 1000] [--partial 600] [--node-arg=--flag=V ...]``

Starts three ``python -m vr.node`` processes on 127.0.0.1-3, then:

1. opens ``--idle`` TCP connections to every node that never send a byte, and prints how long
   a brand-new client waits for a write and for each node's status, and how long a backup that
   is killed and restarted meanwhile takes to be normal in the current view again;
2. opens ``--partial`` connections to one node, each sending all but the last KiB of a 1 MiB
   frame and then hanging, and prints that node's resident memory (VmRSS from /proc) before,
   at its peak and after, and how long a new client's write takes meanwhile.

Nothing is asserted (tests/vr/test_node_limits.py asserts the behaviour); this prints figures.
Every wait is bounded; every process and socket it opens is closed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vr.client import Client, ClientError
from vr.message import CLIENT_REPLICA, HEADER_SIZE, MESSAGE_SIZE_MAX, Command, Operation, make_message

CLUSTER = 43
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SERVE_WAIT_S = 20.0
REJOIN_WAIT_S = 40.0


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Cluster:
    def __init__(self, root: Path, node_args: list[str]) -> None:
        self.root = root
        self.node_args = node_args
        self.peers = [f"{host}:{free_port(host)}" for host in HOSTS]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def peers_text(self) -> str:
        return ",".join(self.peers)

    def start(self, replica: int, *, format_data: bool) -> None:
        directory = self.root / f"node{replica}"
        directory.mkdir(exist_ok=True)
        argv = [
            sys.executable, "-m", "vr.node", "--id", str(replica), "--peers", self.peers_text,
            "--data", str(directory), "--cluster", str(CLUSTER), "--log", str(directory / "node.log"),
            "--seed", str(replica + 1), *self.node_args,
        ]  # fmt: skip
        if format_data:
            argv.append("--format")
        self.processes[replica] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def kill(self, replica: int) -> None:
        process = self.processes.pop(replica)
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def timed(action: Callable[[], Any], *, within_s: float) -> float | None:
    """Seconds until ``action`` first succeeds (retried), or None if it never did within ``within_s``."""
    began = time.monotonic()
    while time.monotonic() - began < within_s:
        try:
            action()
        except (ClientError, OSError):
            time.sleep(0.05)
            continue
        return time.monotonic() - began
    return None


def fresh_client(cluster: Cluster, seed: int) -> Client:
    return Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.5, deadline_s=SERVE_WAIT_S, seed=seed)


def status_of(cluster: Cluster, replica: int, seed: int) -> dict[str, Any]:
    with fresh_client(cluster, seed) as client:
        return client.status(replica)


def primary_of(cluster: Cluster, replicas: list[int], seed: int) -> int | None:
    answers = [status_of(cluster, r, seed + r) for r in replicas]
    views = {a["view"] for a in answers}
    if len(views) != 1 or any(a["status"] != "normal" for a in answers):
        return None
    return int(answers[0]["primary"])


def open_idle(address: str, count: int) -> list[socket.socket]:
    """``count`` connections that complete the handshake and then never send a byte.

    Each connect waits for its handshake (bounded), so a full accept queue shows as a
    slower flood rather than as connections the node never saw.
    """
    host, port = address.rsplit(":", 1)
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(3.0)
        with contextlib.suppress(OSError):
            sock.connect((host, int(port)))
        sockets.append(sock)
    return sockets


def write_once(cluster: Cluster, key: str, seed: int) -> None:
    with fresh_client(cluster, seed) as client:
        client.write(key, seed)


def idle_flood(cluster: Cluster, count: int, fmt: Callable[[str], None]) -> None:
    fmt(f"idle flood: {count} silent connections to each of {len(HOSTS)} nodes")
    sockets = [sock for peer in cluster.peers for sock in open_idle(peer, count)]
    try:
        time.sleep(1.0)
        waited = timed(lambda: write_once(cluster, "idle-write", 101), within_s=SERVE_WAIT_S)
        fmt(f"  new client write served after: {_seconds(waited)}")
        for replica in range(len(HOSTS)):
            waited = timed(lambda r=replica: status_of(cluster, r, 200 + r), within_s=SERVE_WAIT_S)
            fmt(f"  new client status of node {replica} served after: {_seconds(waited)}")
        primary = None
        with contextlib.suppress(ClientError, OSError):
            primary = primary_of(cluster, [0, 1, 2], 300)
        backup = 1 if primary != 1 else 2
        cluster.kill(backup)
        cluster.start(backup, format_data=False)
        sockets += open_idle(cluster.peers[backup], count)

        def rejoined() -> None:
            answers = {r: status_of(cluster, r, 400 + r) for r in range(len(HOSTS))}
            view = max(a["view"] for a in answers.values())
            if answers[backup]["status"] != "normal" or answers[backup]["view"] != view:
                raise OSError("not yet normal in the current view")

        waited = timed(rejoined, within_s=REJOIN_WAIT_S)
        fmt(f"  killed-and-restarted node {backup} normal in the current view after: {_seconds(waited)}")
    finally:
        for sock in sockets:
            sock.close()


def partial_flood(cluster: Cluster, count: int, target: int, fmt: Callable[[str], None]) -> None:
    body = b"x" * (MESSAGE_SIZE_MAX - HEADER_SIZE)
    frame = make_message(
        command=Command.REQUEST, cluster=CLUSTER, body=body, replica=CLIENT_REPLICA,
        operation=Operation.WRITE, client=7, request=1,
    ).encode()  # fmt: skip
    partial = frame[:-1024]
    pid = cluster.processes[target].pid
    before = rss_kib(pid)
    fmt(
        f"partial-frame flood: {count} connections to node {target}, {len(partial):,} bytes each, then silence"
    )
    host, port = cluster.peers[target].rsplit(":", 1)
    sockets: list[socket.socket] = []
    peak = before
    sent_whole = 0
    began = time.monotonic()
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(2.0)
            try:
                sock.connect((host, int(port)))
                sock.sendall(partial)
                sent_whole += 1
            except OSError:
                pass
            sockets.append(sock)
            peak = max(peak, rss_kib(pid))
        send_s = time.monotonic() - began
        time.sleep(1.0)
        peak = max(peak, rss_kib(pid))
        fmt(f"  sent {sent_whole} of {count} partial frames whole in {send_s:.1f}s")
        fmt(f"  node {target} VmRSS: before {before / 1024:.0f} MB, peak {peak / 1024:.0f} MB")
        waited = timed(lambda: write_once(cluster, "partial-write", 501), within_s=SERVE_WAIT_S)
        fmt(f"  new client write served after: {_seconds(waited)}")
        fmt(f"  node {target} VmRSS with the flood still connected: {rss_kib(pid) / 1024:.0f} MB")
    finally:
        for sock in sockets:
            sock.close()


def _seconds(value: float | None) -> str:
    return "NOT SERVED within the bound" if value is None else f"{value * 1000:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=1000, help="silent connections per node")
    parser.add_argument("--partial", type=int, default=600, help="hanging partial-frame connections")
    parser.add_argument("--node-arg", action="append", default=[], help="extra vr.node argument (repeatable)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 3 * args.idle + args.idle + args.partial + 256
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    root = Path(tempfile.mkdtemp(prefix="ratchet-hostile-"))
    cluster = Cluster(root, args.node_arg)
    try:
        for replica in range(len(HOSTS)):
            cluster.start(replica, format_data=True)

        def elected() -> None:
            if primary_of(cluster, [0, 1, 2], 1) is None:
                raise OSError("no primary yet")

        waited = timed(elected, within_s=30)
        if waited is None:
            print("no primary within 30 s; see the node logs in", root)
            return 2
        print(f"cluster up; node VmRSS: {[rss_kib(p.pid) // 1024 for p in cluster.processes.values()]} MB")
        idle_flood(cluster, args.idle, print)
        partial_flood(cluster, args.partial, 0, print)
        print(f"after: node VmRSS {[rss_kib(p.pid) // 1024 for p in cluster.processes.values()]} MB")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
