"""The embedded default: nodes as local processes on 127.0.0.x inside the run's namespaces.

The controller has already entered private network, mount and PID namespaces
(:mod:`clusters.namespace`) before this runs, so every process started here,
every firewall rule and every mount belongs to the run and disappears with it,
even if the controller is killed with SIGKILL.

Addresses: node ``i`` (0-based) listens on ``127.0.0.{i + 2}`` and opens its
connections to the other nodes from that address too (vr.bus binds them), so the
packet filter tells nodes apart by address alone, as root or as an unprivileged
user (see :mod:`clusters.firewall`). 127.0.0.1 is left to the controller, whose
client connections leave from it and are never partitioned.

A node process gets its own session, so a Ctrl-C at the terminal reaches only
the controller, which then stops the nodes in order (resume, terminate, kill).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clusters import namespace
from clusters.firewall import Endpoint, Firewall, choose_firewall

logger = logging.getLogger(__name__)

BASE_PORT = 7100
STOP_GRACE_S = 3.0
SIGNAL_CONFIRM_S = 2.0


@dataclass(frozen=True, slots=True)
class LocalNode:
    name: str
    index: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.host, self.port)


class LocalCluster:
    """Processes on this machine, one per node, and the run namespace's packet filter."""

    kind = "local"
    python = sys.executable

    def __init__(self, *, node_count: int, base_port: int = BASE_PORT) -> None:
        if not namespace.inside():
            raise RuntimeError(
                "LocalCluster must be created inside the run namespace (clusters.namespace.enter)"
            )
        self.nodes: tuple[LocalNode, ...] = tuple(
            LocalNode(f"n{i + 1}", i, f"127.0.0.{i + 2}", base_port + i) for i in range(node_count)
        )
        self._by_name = {n.name: n for n in self.nodes}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._all: list[tuple[str, subprocess.Popen[bytes]]] = []  # every process ever started
        self._ended_by_us: set[int] = set()  # pids we killed or stopped
        self._paused: set[str] = set()
        self.firewall: Firewall = choose_firewall()

    # -- nodes ------------------------------------------------------------------

    def node(self, name: str) -> LocalNode:
        return self._by_name[name]

    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def path(self, name: str, local: Path) -> str:
        """Nodes share the controller's file system: a run file is where it is."""
        return str(local)

    def make_dirs(self, name: str, local: Path) -> None:
        local.mkdir(parents=True, exist_ok=True)

    def spawn(
        self, name: str, argv: Sequence[str], *, output_path: Path, env: Mapping[str, str] | None = None
    ) -> int:
        """Start ``argv`` as node ``name``'s process (stdout+stderr appended to ``output_path``);
        ``env`` adds to the controller's environment (a clock nemesis preloads libfaketime)."""
        if name not in self._by_name:
            raise KeyError(f"no node named {name!r} in {self.names()}")
        if self.is_running(name):
            raise RuntimeError(f"{name} is already running (pid {self._procs[name].pid})")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with output_path.open("ab") as output:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, **env} if env else None,
            )
        self._procs[name] = proc
        self._all.append((name, proc))
        self._paused.discard(name)
        logger.info("node=%s pid=%d started", name, proc.pid)
        return proc.pid

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self, name: str) -> bool:
        return self.pid(name) is not None

    def exit_code(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return None if proc is None else proc.poll()

    def is_paused(self, name: str) -> bool:
        return name in self._paused

    def pause(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        os.kill(pid, signal.SIGSTOP)
        self._paused.add(name)
        self._wait_state(name, pid, stopped=True)
        return True

    def resume(self, name: str) -> bool:
        pid = self.pid(name)
        self._paused.discard(name)
        if pid is None:
            return False
        os.kill(pid, signal.SIGCONT)
        self._wait_state(name, pid, stopped=False)
        return True

    @staticmethod
    def _state(pid: int) -> str | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return stat.rsplit(")", 1)[1].split()[0]  # the comm field may hold spaces and parentheses

    def _wait_state(self, name: str, pid: int, *, stopped: bool) -> None:
        """Signals are delivered asynchronously: confirm the kernel shows the process (not) stopped."""
        deadline = time.monotonic() + SIGNAL_CONFIRM_S
        while time.monotonic() < deadline:
            state = self._state(pid)
            if state is None or (state == "T") == stopped:
                return
            time.sleep(0.002)
        raise RuntimeError(
            f"{name} (pid {pid}) did not {'stop' if stopped else 'continue'} "
            f"within {SIGNAL_CONFIRM_S} s of the signal; state {self._state(pid)}"
        )

    def kill(self, name: str, *, wait: bool = True) -> bool:
        """SIGKILL and reap; True if it was running. ``wait=False`` only sends the signal: a process
        blocked in a request to a FUSE daemon dies only once the daemon answers, so whoever holds
        that answer (a power cut's stalled fsync) signals first and reaps with a second kill."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return False
        self._ended_by_us.add(proc.pid)
        proc.kill()
        if not wait:
            return True
        proc.wait(timeout=STOP_GRACE_S)
        self._paused.discard(name)
        logger.info("node=%s pid=%d killed", name, proc.pid)
        return True

    def stop(self, name: str) -> None:
        """Resume if paused, SIGTERM, then SIGKILL after a grace period."""
        proc = self._procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        if name in self._paused:
            self.resume(name)
        self._ended_by_us.add(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)

    def stop_all(self) -> list[str]:
        """Stop every node; returns the names that were still running."""
        running = [n for n in self.names() if self.is_running(n)]
        for name in running:
            proc = self._procs[name]
            if name in self._paused:
                self.resume(name)
            self._ended_by_us.add(proc.pid)
            proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for name in running:
            proc = self._procs[name]
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_GRACE_S)
        return running

    def leftover_processes(self) -> list[int]:
        """Pids of node processes still alive (teardown asserts this is empty)."""
        return [p.pid for p in self._procs.values() if p.poll() is None]

    def unexpected_exits(self) -> list[dict[str, int | str]]:
        """Node processes that ended on their own (crashed or exited), not by a kill or stop of ours."""
        return [
            {"node": name, "pid": proc.pid, "exit_code": code}
            for name, proc in self._all
            if (code := proc.poll()) is not None and proc.pid not in self._ended_by_us
        ]

    def endpoints(self) -> dict[str, Endpoint]:
        return {n.name: n.endpoint() for n in self.nodes}

    def close(self) -> list[str]:
        """Nothing to release: node files are already in the run directory, and the processes,
        rules and mounts belong to the run's namespaces, which end with the controller."""
        return []
