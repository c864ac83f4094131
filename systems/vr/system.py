"""Ratchet's own VR cluster as a :class:`core.system.System` on any :class:`core.cluster.Cluster`.

Each node is ``python3 -m vr.node`` (contracts §3) with its data directory in the
run's ``nodes/<node>/data``, its log and event log in ``nodes/<node>/``. The first
start formats the data file; every later start (after a kill) reopens it, so a
restart really recovers from disk. Primary discovery asks every running node for
its status and believes the primary of the highest view that a node in
``normal`` status reports.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cluster import Cluster, ClusterNodes
from core.system import OpFailed, OpIndeterminate

if TYPE_CHECKING:
    from nemeses.clock import ClockControl

logger = logging.getLogger(__name__)

STATUS_TIMEOUT_S = 0.3
STARTUP_TIMEOUT_S = 15.0


class VRClient:
    """Adapts ``vr.client.Client`` to the harness's two exceptions (fail / info)."""

    def __init__(self, system: VRSystem, *, seed: int, timeout_s: float, home: int | None = None) -> None:
        from vr.client import Client

        self._system = system
        self._client = Client(
            system.addresses(), cluster=system.cluster_id, timeout_s=timeout_s, seed=seed, home=home
        )

    @property
    def last_node(self) -> str | None:
        """The node whose reply completed the last op (None if none did): not the believed primary,
        since after a timeout the client asks every node and a stale backup may be the one answering."""
        answered = self._client.answered_by
        names = self._system.node_names()
        return names[answered] if answered is not None and 0 <= answered < len(names) else None

    def _call(self, method: str, *args: Any) -> Any:
        from vr.client import RequestFailed, RequestIndeterminate

        try:
            return getattr(self._client, method)(*args)
        except RequestFailed as exc:
            raise OpFailed(exc.error, value=exc.value) from exc
        except RequestIndeterminate as exc:
            raise OpIndeterminate(exc.reason) from exc

    def read(self, key: str) -> Any:
        return self._call("read", key)

    def write(self, key: str, value: Any) -> Any:
        return self._call("write", key, value)

    def cas(self, key: str, old: Any, new: Any) -> Any:
        return self._call("cas", key, old, new)

    def append(self, key: str, value: Any) -> Any:
        return self._call("append", key, value)

    def close(self) -> None:
        self._client.close()


class VRSystem(ClusterNodes):
    name = "vr"

    def __init__(
        self,
        cluster: Cluster,
        *,
        nodes_dir: Path,
        bug: str | None,
        seed: int,
        client_timeout_s: float,
        cluster_id: int = 1,
        bind_clients_to_nodes: bool = False,
        clock: ClockControl | None = None,
        messages: Any = None,
    ) -> None:
        self.messages = messages  # a systems.vr.proxy.MessageProxy on every replica link, or None
        self.bind_clients_to_nodes = bind_clients_to_nodes
        self.clock = clock  # when set, every node reads its clock through it (nemeses.clock)
        self.cluster = cluster
        self.nodes_dir = nodes_dir
        self.bug = bug
        self.seed = seed
        self.client_timeout_s = client_timeout_s
        self.cluster_id = cluster_id
        self.disk: Any = None  # nemeses.disk.nemesis.FaultfsMounts when the run injects disk faults
        self._formatted: set[str] = set()
        self._starts: dict[str, int] = {}
        self._status_client: Any = None
        self._status_lock = threading.Lock()  # the nemesis and the progress display both ask

    # -- layout -------------------------------------------------------------------

    def addresses(self) -> list[str]:
        return [n.address for n in self.cluster.nodes]

    def node_files(self, node: str) -> dict[str, Path]:
        base = self.nodes_dir / node
        return {
            "dir": base,
            "log": base / "node.log",
            "events": base / "events.jsonl",
            "output": base / "output.log",
            "data": base / "data",
        }

    # -- lifecycle ----------------------------------------------------------------

    def argv(self, node: str, *, format_data: bool) -> list[str]:
        files = self.node_files(node)
        index = self.cluster.node(node).index
        on_node = self.cluster.path
        argv = [
            self.cluster.python, "-m", "vr.node",
            "--id", str(index),
            "--peers", ",".join(self.addresses()),
            "--data", on_node(node, files["data"]),
            "--cluster", str(self.cluster_id),
            "--log", on_node(node, files["log"]),
            "--events", on_node(node, files["events"]),
            "--seed", str((self.seed * 1_000_003 + index * 7919 + self._starts.get(node, 0)) % (1 << 63)),
        ]  # fmt: skip
        if format_data:
            argv.append("--format")
        if self.bug:
            argv += ["--bug", self.bug]
        return argv

    def start(self, node: str) -> None:
        files = self.node_files(node)
        self.cluster.make_dirs(node, files["data"])
        if self.disk is not None:
            self.disk.prepare(node, files["data"])
        format_data = node not in self._formatted
        env = self.clock.env(node) if self.clock is not None else None
        self.cluster.spawn(
            node, self.argv(node, format_data=format_data), output_path=files["output"], env=env
        )
        self._formatted.add(node)
        self._starts[node] = self._starts.get(node, 0) + 1

    def setup(self) -> None:
        if self.messages is not None and not self.messages.installed:
            self.messages.install()  # before any node dials a peer: the redirect catches new connections
        for node in self.node_names():
            self.start(node)
        healthy = self.wait_healthy(timeout_s=STARTUP_TIMEOUT_S)
        if not healthy or not all(self.cluster.is_running(n) for n in self.node_names()):
            raise RuntimeError(self._startup_failure())

    def _startup_failure(self) -> str:
        lines = [
            "the VR cluster did not become healthy (every node normal, in one view) "
            f"within {STARTUP_TIMEOUT_S:.0f} s"
        ]
        for node in self.node_names():
            code = self.cluster.exit_code(node)
            state = "running" if code is None else f"exited with code {code}"
            output = self.node_files(node)["output"]
            tail = output.read_text(errors="replace").strip().splitlines()[-3:] if output.exists() else []
            lines.append(f"{node}: {state}" + (f"; last output: {' | '.join(tail)}" if tail else ""))
        return "; ".join(lines)

    def teardown(self, *, keep_data: bool) -> list[str]:
        """Stop every node; remove data directories unless asked to keep them. Returns what it did."""
        if self.disk is not None:
            self.disk.clear_all()  # nothing may stay stalled in a disk fault while nodes stop
        try:
            done = self.stop_all()
        finally:
            if self.disk is not None:
                released = self.disk.release_all()
        if self.disk is not None:
            done.extend(released)
        if self.messages is not None:
            done += self.messages.close()
        with self._status_lock:
            if self._status_client is not None:
                self._status_client.close()
                self._status_client = None
        if not keep_data:
            for node in self.node_names():
                data = self.node_files(node)["data"]
                if data.exists():
                    shutil.rmtree(data)
        return done

    # -- clients and status -------------------------------------------------------

    def open_client(self, *, process: int, seed: int) -> VRClient:
        home = process % len(self.node_names()) if self.bind_clients_to_nodes else None
        return VRClient(self, seed=seed, timeout_s=self.client_timeout_s, home=home)

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Status of every running, unpaused node that answers within STATUS_TIMEOUT_S."""
        with self._status_lock:
            return self._statuses()

    def _statuses(self) -> dict[str, dict[str, Any]]:
        from vr.client import Client, ClientError

        if self._status_client is None:
            self._status_client = Client(
                self.addresses(), cluster=self.cluster_id, timeout_s=STATUS_TIMEOUT_S, seed=self.seed ^ 0x5EED
            )
        found: dict[str, dict[str, Any]] = {}
        for node in self.node_names():
            if not self.cluster.is_running(node) or self.cluster.is_paused(node):
                continue
            try:
                found[node] = self._status_client.status(self.cluster.node(node).index)
            except ClientError:
                continue
        return found

    def convergence(self, query: dict[str, Any]) -> dict[str, dict[str, Any] | str]:
        """Every node's ``convergence`` report (contracts §3) for ``query``, or why it gave none."""
        from vr.client import Client, ClientError

        found: dict[str, dict[str, Any] | str] = {}
        with self._status_lock:
            if self._status_client is None:
                self._status_client = Client(
                    self.addresses(),
                    cluster=self.cluster_id,
                    timeout_s=STATUS_TIMEOUT_S,
                    seed=self.seed ^ 0x5EED,
                )
            for node in self.node_names():
                if not self.cluster.is_running(node) or self.cluster.is_paused(node):
                    found[node] = "not running" if not self.cluster.is_running(node) else "paused"
                    continue
                try:
                    status = self._status_client.status(self.cluster.node(node).index, {"convergence": query})
                except ClientError as exc:
                    found[node] = f"no answer: {exc}"
                    continue
                report = status.get("convergence")
                found[node] = report if isinstance(report, dict) else "no convergence report in its status"
        return found

    def assertion_failures(self) -> list[dict[str, Any]]:
        """Replica assertions in every node's log (:mod:`systems.vr.crashes`), after the nodes stopped."""
        from systems.vr.crashes import node_assertions

        return [
            failure.to_json()
            for node in self.node_names()
            for failure in node_assertions(node, self.node_files(node)["dir"])
        ]

    def primary(self) -> str | None:
        normal = [s for s in self.statuses().values() if s.get("status") == "normal"]
        if not normal:
            return None
        best = max(normal, key=lambda s: int(s.get("view", 0)))
        index = best.get("primary")
        names = self.node_names()
        return names[index] if isinstance(index, int) and 0 <= index < len(names) else None

    def wait_healthy(self, *, timeout_s: float) -> bool:
        """True once every running node is in normal status in the same view with a primary."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = [n for n in self.node_names() if self.cluster.is_running(n)]
            if not running:
                return False
            statuses = self.statuses()
            views = {s.get("view") for s in statuses.values() if s.get("status") == "normal"}
            if (
                len(statuses) == len(running)
                and len(views) == 1
                and all(s.get("status") == "normal" for s in statuses.values())
            ):
                return True
            time.sleep(0.1)
        return False
