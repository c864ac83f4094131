"""A tiny real key-value server, as a System, to test the runner without VR.

Every node runs ``python kvsystem.py serve HOST PORT STATE_FILE [--volatile]``;
clients talk to the first node only (it is "the primary"). With a state file
the server fsyncs every write and reloads it on restart, so it is linearizable
under pause and kill; ``--volatile`` keeps state in memory only, so a kill
loses acknowledged writes: a real anomaly the checkers must report.

Test code only: it lets the runner, history, teardown, store and exit codes be
tested on real processes and real TCP while the VR cluster is elsewhere.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from clusters.local import LocalCluster
from core.cluster import ClusterNodes
from core.system import OpFailed, OpIndeterminate

SERVER = Path(__file__).resolve()


def serve(host: str, port: int, state_path: str, volatile: bool) -> None:
    state: dict[str, Any] = {}
    if not volatile and os.path.exists(state_path):
        state = json.loads(Path(state_path).read_text() or "{}")
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(64)
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                buffers[conn] = b""
                continue
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                selector.unregister(sock)
                buffers.pop(sock, None)
                sock.close()
                continue
            buffers[sock] += data
            while b"\n" in buffers[sock]:
                line, buffers[sock] = buffers[sock].split(b"\n", 1)
                sock.sendall(
                    json.dumps(apply(state, json.loads(line), state_path, volatile)).encode() + b"\n"
                )


def apply(state: dict[str, Any], request: dict[str, Any], state_path: str, volatile: bool) -> dict[str, Any]:
    key = request["key"]
    if request["f"] == "read":
        return {"ok": True, "value": state.get(key)}
    if request["f"] == "cas":
        if state.get(key) != request["old"]:
            return {"ok": False, "error": "cas-mismatch", "value": state.get(key)}
        state[key] = request["new"]
    else:
        state[key] = request["value"]
    if not volatile:
        tmp = state_path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(json.dumps(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, state_path)
    return {"ok": True, "value": state.get(key)}


class KVClient:
    def __init__(self, host: str, port: int, timeout_s: float, node: str) -> None:
        self.address, self.timeout_s, self.last_node = (host, port), timeout_s, node
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _call(self, request: dict[str, Any]) -> Any:
        if self._sock is None:
            try:
                self._sock = socket.create_connection(self.address, timeout=self.timeout_s)
            except OSError as exc:
                raise OpFailed("unavailable", value=str(exc)) from exc
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            self.close()
            raise OpIndeterminate(f"send: {exc}") from exc
        deadline = time.monotonic() + self.timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError("no reply")
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(65536)
            except OSError as exc:
                self.close()
                raise OpIndeterminate(f"receive: {exc}") from exc
            if not chunk:
                self.close()
                raise OpIndeterminate("connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply = json.loads(line)
        if not reply["ok"]:
            raise OpFailed(reply["error"], value=reply.get("value"))
        return reply["value"]

    def read(self, key: str) -> Any:
        return self._call({"f": "read", "key": key})

    def write(self, key: str, value: Any) -> Any:
        return self._call({"f": "write", "key": key, "value": value})

    def cas(self, key: str, old: Any, new: Any) -> Any:
        return self._call({"f": "cas", "key": key, "old": old, "new": new})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""


class KVSystem(ClusterNodes):
    name = "kv"

    def __init__(
        self,
        cluster: LocalCluster,
        *,
        nodes_dir: Path,
        volatile: bool,
        client_timeout_s: float,
        broken: bool = False,
    ) -> None:
        self.cluster, self.nodes_dir, self.volatile, self.broken = cluster, nodes_dir, volatile, broken
        self.client_timeout_s = client_timeout_s

    def node_files(self, node: str) -> dict[str, Path]:
        base = self.nodes_dir / node
        return {"dir": base, "output": base / "output.log", "data": base / "data"}

    def start(self, node: str) -> None:
        n = self.cluster.node(node)
        files = self.node_files(node)
        files["data"].mkdir(parents=True, exist_ok=True)
        port = 99_999 if self.broken else n.port  # not a port: the server dies at bind, touching no network
        argv = [sys.executable, str(SERVER), "serve", n.host, str(port), str(files["data"] / "state.json")]
        if self.volatile:
            argv.append("--volatile")
        self.cluster.spawn(node, argv, output_path=files["output"])

    def setup(self) -> None:
        for node in self.node_names():
            self.start(node)
        if not self.wait_healthy(timeout_s=3):
            raise RuntimeError("kv servers did not start")

    def open_client(self, *, process: int, seed: int) -> KVClient:
        first = self.cluster.nodes[0]
        return KVClient(first.host, first.port, self.client_timeout_s, first.name)

    def primary(self) -> str | None:
        return self.node_names()[0]

    def wait_healthy(self, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up = 0
            for node in self.cluster.nodes:
                if self.cluster.is_paused(node.name):
                    continue
                try:
                    socket.create_connection((node.host, node.port), timeout=0.2).close()
                    up += 1
                except OSError:
                    pass
            if up == len(self.cluster.nodes):
                return True
            time.sleep(0.05)
        return False

    def teardown(self, *, keep_data: bool) -> list[str]:
        return self.stop_all()


if __name__ == "__main__" and sys.argv[1] == "serve":
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], "--volatile" in sys.argv)
