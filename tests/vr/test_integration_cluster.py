"""Three real ``python -m vr.node`` processes on 127.0.0.1-3: kill the primary, lose nothing.

The claim (issue 3): writes and cas go through the client; SIGKILL of the primary
(found through ``status``) leads to a new view and progress resumes; the old
primary restarts from its own data directory and catches up (its commit reaches
the others'); every acknowledged write is still readable, also after SIGKILL of
every node and a restart of all three from disk. Each write uses its own key, so
"still readable" is exact: an acknowledged key must read back its value, and an
indeterminate one may read back its value or nothing, never anything else.

Everything is bounded: each wait names what it waits for and has a deadline,
and a ``finally`` kills every process this test started and asserts none is left.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vr.client import Client, RequestFailed, RequestIndeterminate
from vr.layout import Layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLUSTER = 11
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    """Poll until ``predicate()`` is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (RequestFailed, RequestIndeterminate, OSError) as error:
            last_error, value = error, None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last_error})")


@dataclass
class LocalCluster:
    """Real node processes, one data directory each, all on loopback."""

    root: Path
    size: int = 3
    peers: list[str] = field(default_factory=list)
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_args: dict[int, list[str]] = field(default_factory=dict)  # per replica, appended to argv

    def __post_init__(self) -> None:
        self.peers = [f"{HOSTS[i]}:{free_port(HOSTS[i])}" for i in range(self.size)]
        for i in range(self.size):
            (self.root / f"node{i}").mkdir()

    @property
    def peers_text(self) -> str:
        return ",".join(self.peers)

    def argv(self, replica: int, *, format_data: bool) -> list[str]:
        directory = self.root / f"node{replica}"
        argv = [
            sys.executable,
            "-m",
            "vr.node",
            "--id",
            str(replica),
            "--peers",
            self.peers_text,
            "--data",
            str(directory),
            "--cluster",
            str(CLUSTER),
            "--log",
            str(directory / "node.log"),
            "--events",
            str(directory / "events.jsonl"),
            "--seed",
            str(1000 + replica),
        ]
        argv += self.extra_args.get(replica, [])
        return [*argv, "--format"] if format_data else argv

    def start(self, replica: int, *, format_data: bool = False) -> None:
        assert replica not in self.processes or self.processes[replica].poll() is not None
        process = subprocess.Popen(self.argv(replica, format_data=format_data), stdin=subprocess.DEVNULL)
        self.processes[replica] = process
        self.started.append(process)

    def kill(self, replica: int) -> None:
        process = self.processes.pop(replica)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def terminate_all(self) -> dict[int, int]:
        """SIGTERM every node; return their exit codes (a clean stop is 0)."""
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {replica: process.wait(timeout=15) for replica, process in self.processes.items()}
        self.processes.clear()
        return codes

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def log(self, replica: int) -> str:
        path = self.root / f"node{replica}" / "node.log"
        return path.read_text() if path.exists() else ""

    def events(self, replica: int) -> list[dict[str, Any]]:
        path = self.root / f"node{replica}" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path)
    try:
        yield local
    finally:
        local.cleanup()
        left = [p.pid for p in local.started if p.poll() is None]
        assert left == [], f"node processes left running: {left}"
        assert not _processes_mentioning(str(tmp_path)), "a node process outlived the test"
        for data_file in tmp_path.glob("node*/replica.vr"):
            data_file.unlink()  # ~100 MB each, preallocated; the logs and event logs stay for debugging


def _processes_mentioning(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().split()[2]
        except OSError:
            continue
        if needle in cmdline and "vr.node" in cmdline and state != "Z":
            found.append(int(entry))
    return found


def statuses(client: Client, replicas: list[int]) -> dict[int, dict[str, Any]]:
    answers = {}
    for replica in replicas:
        with contextlib.suppress(RequestIndeterminate):
            answers[replica] = client.status(replica)
    return answers


def agreed_primary(client: Client, replicas: list[int]) -> int | None:
    """The primary that every listed replica, all in normal status and one view, agrees on."""
    answers = statuses(client, replicas)
    if len(answers) != len(replicas):
        return None
    views = {a["view"] for a in answers.values()}
    if len(views) != 1 or any(a["status"] != "normal" for a in answers.values()):
        return None
    primaries = {a["primary"] for a in answers.values()}
    return primaries.pop() if len(primaries) == 1 else None


def wait_for_primary(client: Client, replicas: list[int], *, what: str, timeout_s: float = 15.0) -> int:
    found: list[int] = []

    def agreed() -> bool:
        primary = agreed_primary(client, replicas)
        if primary is not None:
            found.append(primary)
        return primary is not None

    wait_until(agreed, timeout_s=timeout_s, what=what)
    return found[-1]


@dataclass
class Ledger:
    """What the client was told about each key (one write per key)."""

    acknowledged: dict[str, Any] = field(default_factory=dict)
    uncertain: dict[str, Any] = field(default_factory=dict)

    def write(self, client: Client, key: str, value: Any) -> bool:
        try:
            client.write(key, value)
        except RequestIndeterminate:
            self.uncertain[key] = value
            return False
        self.acknowledged[key] = value
        return True

    def check(self, client: Client) -> None:
        for key, value in self.acknowledged.items():
            assert client.read(key) == value, f"acknowledged write {key}={value!r} lost"
        for key, value in self.uncertain.items():
            assert client.read(key) in (None, value), f"{key} holds a value nobody wrote"


def test_kill_the_primary_then_restart_it_and_lose_nothing(cluster: LocalCluster) -> None:
    for replica in range(3):
        cluster.start(replica, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, deadline_s=8.0, seed=5)
    ledger = Ledger()
    try:
        first_primary = wait_for_primary(client, [0, 1, 2], what="three replicas normal in one view")
        for n in range(20):
            assert ledger.write(client, f"before-{n}", n), "a healthy cluster acknowledges every write"
        client.write("register", 0)
        assert client.cas("register", 0, 1) is None
        with pytest.raises(RequestFailed) as mismatch:
            client.cas("register", 0, 2)
        assert mismatch.value.error == "cas-mismatch" and mismatch.value.value == 1
        view_before = client.status(first_primary)["view"]

        cluster.kill(first_primary)
        survivors = [r for r in range(3) if r != first_primary]
        for n in range(20):
            ledger.write(client, f"during-{n}", n)
        assert any(k.startswith("during-") for k in ledger.acknowledged), "no progress after the kill"
        new_primary = wait_for_primary(client, survivors, what="the survivors in a new view")
        assert new_primary != first_primary
        assert client.status(new_primary)["view"] > view_before

        cluster.start(first_primary)
        for n in range(10):
            ledger.write(client, f"after-{n}", n)

        def caught_up() -> bool:
            answers = statuses(client, [0, 1, 2])
            if len(answers) != 3 or answers[first_primary]["status"] != "normal":
                return False
            return answers[first_primary]["commit"] >= max(a["commit"] for a in answers.values()) > 0

        wait_until(caught_up, timeout_s=15, what=f"restarted replica {first_primary} to catch up")
        ledger.check(client)
        assert client.read("register") == 1

        # SIGKILL everyone: what was acknowledged is in the journals (fsynced before the ack).
        for replica in range(3):
            cluster.kill(replica)
        for replica in range(3):
            cluster.start(replica)
        wait_for_primary(client, [0, 1, 2], what="the cluster back after a full SIGKILL")
        ledger.check(client)
        assert ledger.write(client, "final", "ok")

        kinds = {event["kind"] for r in range(3) for event in cluster.events(r)}
        for r in range(3):
            for event in cluster.events(r):
                assert {"mono_ns", "wall_ns", "replica", "kind"} <= set(event), event
        assert kinds, "the nodes emitted no events at all"
        assert "recovered_from_disk" in {e["kind"] for e in cluster.events(first_primary)}
        assert "became_primary" in {e["kind"] for e in cluster.events(new_primary)}
        codes = cluster.terminate_all()
        assert codes == {0: 0, 1: 0, 2: 0}, f"SIGTERM must stop cleanly: {codes}"
        for r in range(3):
            assert "node=stopped" in cluster.log(r)
    finally:
        client.close()


def test_nodes_on_asyncio_and_uvloop_loops_form_one_cluster(cluster: LocalCluster) -> None:
    """Docker and ssh nodes run on asyncio's loop (the host's python3), local ones on uvloop."""
    loops = {0: "asyncio", 1: "uvloop", 2: "asyncio"}
    for replica, loop in loops.items():
        cluster.extra_args[replica] = ["--event-loop", loop]
        cluster.start(replica, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, deadline_s=8.0, seed=7)
    ledger = Ledger()
    try:
        primary = wait_for_primary(client, [0, 1, 2], what="three replicas normal in one view")
        for n in range(60):
            assert ledger.write(client, f"k{n}", n), "a healthy cluster acknowledges every write"
        cluster.kill(primary)
        survivors = [r for r in range(3) if r != primary]
        wait_for_primary(client, survivors, what="the survivors in a new view")
        for n in range(20):
            ledger.write(client, f"after-{n}", n)
        ledger.check(client)
        answers = statuses(client, survivors)
        assert {r: answers[r]["node"]["event_loop"] for r in survivors} == {r: loops[r] for r in survivors}
        for answer in answers.values():
            node = answer["node"]
            assert 0 <= node["flushes_inline"] <= node["flushes"] and node["flushes"] > 0
    finally:
        client.close()


def test_a_second_node_on_a_taken_address_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.start(0, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, seed=6)
    try:
        wait_until(lambda: client.status(0), timeout_s=15, what="node 0 answering status")
    finally:
        client.close()
    other = tmp_path / "other"
    other.mkdir()
    argv = cluster.argv(0, format_data=True)
    argv[argv.index("--data") + 1] = str(other)
    argv[argv.index("--log") + 1] = str(other / "node.log")
    argv[argv.index("--events") + 1] = str(other / "events.jsonl")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 3, done.stderr
    assert "cannot listen on" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert not (other / "replica.vr").exists(), "refused before touching the data file"


def test_a_data_file_of_the_wrong_size_is_refused(cluster: LocalCluster) -> None:
    directory = cluster.root / "node1"
    (directory / "replica.vr").write_bytes(bytes(4096))
    argv = cluster.argv(1, format_data=False)  # logs go to --log, so stderr holds only the refusal
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 3, done.stderr
    assert "replica.vr" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_hostile_traffic_neither_crashes_nor_stalls_real_nodes(cluster: LocalCluster) -> None:
    """Garbage, broken frames and well-framed nonsense from a client identity, sent at every node.

    Afterwards every node still runs, the cluster still commits, and the status counters show
    the drops by reason (the harness reads them from there).
    """
    import random

    from vr.message import CLIENT_REPLICA, Command, Operation, make_message

    for replica in range(3):
        cluster.start(replica, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, deadline_s=8.0, seed=7)
    rng = random.Random(2024)
    try:
        wait_for_primary(client, [0, 1, 2], what="three replicas normal in one view")
        client.write("before", 1)
        for replica, peer in enumerate(cluster.peers):
            host, port = peer.rsplit(":", 1)
            for trial in range(60):
                if trial % 3 == 0:
                    payload = rng.randbytes(rng.randrange(1, 600))
                elif trial % 3 == 1:
                    frame = make_message(
                        command=Command.REQUEST, cluster=CLUSTER, body=b'{"key":"x"}', replica=CLIENT_REPLICA,
                        operation=Operation.READ, client=rng.randrange(1, 1 << 64), request=1,
                    ).encode()  # fmt: skip
                    cut = rng.randrange(1, len(frame))
                    payload = frame[:cut] + bytes([frame[cut] ^ 0xFF]) + frame[cut + 1 :]
                else:
                    command = rng.choice(list(Command))
                    payload = make_message(
                        command=command, cluster=CLUSTER, body=rng.randbytes(rng.randrange(0, 300)),
                        replica=CLIENT_REPLICA, operation=rng.randrange(0, 256), view=rng.randrange(0, 5),
                        op=rng.randrange(0, 50), commit=rng.randrange(0, 50),
                        client=rng.randrange(0, 1 << 64), request=rng.randrange(0, 5),
                    ).encode()  # fmt: skip
                with socket.create_connection((host, int(port)), timeout=2) as raw:
                    raw.sendall(payload)
            assert cluster.processes[replica].poll() is None, (
                f"node {replica} died: {cluster.log(replica)[-2000:]}"
            )
        for replica in range(3):
            assert cluster.processes[replica].poll() is None, f"node {replica} died"
        assert ledger_write_ok(client, "after", 2)
        assert client.read("before") == 1
        dropped = {r: client.status(r)["counters"]["dropped"] for r in range(3)}
        for replica, reasons in dropped.items():
            assert reasons.get("header-checksum", 0) > 0, (replica, reasons)  # dropped by the bus
            assert reasons.get("sender", 0) > 0, (replica, reasons)  # well framed, dropped by the replica
    finally:
        client.close()


def ledger_write_ok(client: Client, key: str, value: Any) -> bool:
    client.write(key, value)
    return client.read(key) == value


def test_a_wiped_data_file_is_refused_not_run(cluster: LocalCluster) -> None:
    """A data file of the right size whose superblock copies are all gone: refuse, never start blank."""
    cluster.start(2, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, seed=8)
    try:
        wait_until(lambda: client.status(2), timeout_s=15, what="node 2 answering status")
    finally:
        client.close()
    cluster.kill(2)
    path = cluster.root / "node2" / "replica.vr"
    with path.open("r+b") as data:
        data.write(bytes(Layout().wal_headers_offset))  # zero the superblock zone (every copy), nothing else
    done = subprocess.run(
        cluster.argv(2, format_data=False), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "cannot be trusted" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_a_planted_bug_is_on_only_when_named(tmp_path: Path) -> None:
    """One-replica clusters, one with --bug: the status says which bugs run (the harness records it)."""
    statuses_seen = {}
    for name, bug in (("plain", None), ("buggy", "no-client-table")):
        directory = tmp_path / name
        directory.mkdir()
        peer = f"127.0.0.1:{free_port('127.0.0.1')}"
        argv = [sys.executable, "-m", "vr.node", "--id", "0", "--peers", peer, "--data", str(directory)]
        argv += ["--format", "--cluster", str(CLUSTER), "--log", str(directory / "node.log")]
        if bug:
            argv += ["--bug", bug]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        client = Client(peer, cluster=CLUSTER, timeout_s=0.3, seed=9)
        try:
            statuses_seen[name] = wait_until(
                functools.partial(client.status, 0), timeout_s=15, what=f"{name} node status"
            )
            assert client.write("k", 1) is None, "a one-replica cluster commits on its own"
        finally:
            client.close()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
            (directory / "replica.vr").unlink()
    assert statuses_seen["plain"]["node"]["bugs"] == []
    assert statuses_seen["buggy"]["node"]["bugs"] == ["no-client-table"]


def test_a_paused_primary_is_replaced_and_rejoins_after_resume(cluster: LocalCluster) -> None:
    """SIGSTOP the primary: the others form a view and keep committing; SIGCONT: it catches up."""
    for replica in range(3):
        cluster.start(replica, format_data=True)
    client = Client(cluster.peers_text, cluster=CLUSTER, timeout_s=0.3, deadline_s=8.0, seed=10)
    ledger = Ledger()
    try:
        paused = wait_for_primary(client, [0, 1, 2], what="three replicas normal in one view")
        for n in range(5):
            assert ledger.write(client, f"before-{n}", n)
        cluster.processes[paused].send_signal(signal.SIGSTOP)
        try:
            others = [r for r in range(3) if r != paused]
            for n in range(10):
                ledger.write(client, f"paused-{n}", n)
            assert any(k.startswith("paused-") for k in ledger.acknowledged), "no progress while paused"
            assert wait_for_primary(client, others, what="a view without the paused primary") != paused
        finally:
            cluster.processes[paused].send_signal(signal.SIGCONT)
        for n in range(5):
            ledger.write(client, f"resumed-{n}", n)

        def rejoined() -> bool:
            answers = statuses(client, [0, 1, 2])
            if len(answers) != 3 or answers[paused]["status"] != "normal":
                return False
            views = {a["view"] for a in answers.values()}
            return len(views) == 1 and answers[paused]["commit"] >= max(a["commit"] for a in answers.values())

        wait_until(rejoined, timeout_s=15, what=f"resumed replica {paused} back in the view and caught up")
        ledger.check(client)
        assert cluster.processes[paused].poll() is None
    finally:
        client.close()
