"""Nodes on remote hosts over SSH, one node per host (Jepsen's way of outgrowing one machine).

Per run, each host gets ``<remote_dir>/ratchet-<tag>/``:

- ``ratchet-run.json``: the marker ``ratchet clean --ssh`` finds leftovers by (run, controller,
  the packet-filter table, the process files);
- ``code/vr/``: the node program, shipped over SFTP;
- ``run/``: the run directory's files as the node sees them (``Cluster.path`` maps
  ``<run dir>/nodes/n1/node.log`` to ``.../run/nodes/n1/node.log``);
- ``proc/``: one ``<node>.<start>.sid|pid|exit`` triple per start of the node.

A node is started by a constant wrapper script under ``setsid``: the wrapper
starts the node in the background (output to its file), writes the node's pid and
its own session id, prints them, waits, writes and prints the exit code. The
controller keeps that command's channel open and reads it, so it learns of a
node's death at once, without polling, and a controller killed with SIGKILL
leaves files that say exactly which process group to kill. Pause and kill are
signals to the node's pid, confirmed from ``/proc/<pid>/stat`` (pause) or the
wrapper's exit line (kill).

At close the run's rules, processes and files are removed from every host after
the node files (logs, events and, unless ``keep_data = "never"``, data) were
downloaded into the run directory, where reports read them as for local runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clusters.firewall import FIREWALL_ENV, Endpoint
from clusters.ssh.connection import Host, Login, SSHError, connect, parallel
from clusters.ssh.firewall import SSHFirewall, host_firewall

logger = logging.getLogger(__name__)

BASE_PORT = 7100
STOP_GRACE_S = 3.0
SPAWN_CONFIRM_S = 10.0
MARKER = "ratchet-run.json"
DIR_PREFIX = "ratchet-"
CODE_SKIP = ("__pycache__", ".pyc", ".pytest_cache")

# The node wrapper (positional: code dir, proc file prefix, output file, argv...). It stays the
# session leader; the node is its background child in the same process group.
SPAWN = r"""
cd "$1" || exit 97
proc=$2; out=$3; shift 3
mkdir -p -- "$(dirname -- "$out")" || exit 98
echo "$$" >"$proc.sid"
"$@" </dev/null >>"$out" 2>&1 &
child=$!
echo "$child" >"$proc.pid"
echo "pid $child $$"
wait "$child"
code=$?
echo "$code" >"$proc.exit"
echo "exit $code"
"""

# The run's directories on a host (positional: remote_dir, the run's directory in it); prints
# "exists" (refused: leftovers of this very run) or "new" when remote_dir itself was created.
PROVISION = r"""
if [ -e "$2" ]; then echo exists; exit 0; fi
[ -d "$1" ] || echo new
mkdir -p -- "$1" && mkdir -- "$2" "$2/proc" "$2/run" "$2/code"
"""

# Signal a pid and confirm its state in /proc/<pid>/stat (positional: signal, pid, T or R).
# The state is the first field after the last ')' (the command name may hold spaces or parentheses).
SIGNAL_CONFIRM = r"""
kill -s "$1" "$2" || exit 1
i=0
while [ "$i" -lt 400 ]; do
  s=$(cat "/proc/$2/stat" 2>/dev/null) || exit 0
  s=${s##*) }; s=${s%% *}
  if [ "$3" = T ]; then [ "$s" = T ] && exit 0; else [ "$s" != T ] && exit 0; fi
  i=$((i + 1)); sleep 0.005
done
echo "state $s after 2 s" >&2
exit 2
"""


def run_tag(run_dir: Path) -> str:
    """Six hex digits naming the run on the hosts: from this controller's name and the run directory
    (unique per run), short enough for an iptables chain name (``RATCHET-PRIMARY-CHAIN-<tag>``)."""
    text = f"{socket.gethostname()}:{run_dir.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:6]


@dataclass(frozen=True, slots=True)
class SSHNode:
    name: str
    index: int
    host: str  # the IPv4 address the node listens on and sends from (the host's, as SSH reached it)
    port: int
    hostname: str  # as the user named it

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.host, self.port)


@dataclass
class _Process:
    """One start of a node: its pid, the wrapper's session id, and how it ended."""

    proc: str  # remote file prefix
    pid: int | None = None
    sid: int | None = None
    exit_code: int | None = None
    started: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    ended_by_us: bool = False

    def on_line(self, line: str) -> None:
        words = line.split()
        if words[:1] == ["pid"] and len(words) == 3:
            self.pid, self.sid = int(words[1]), int(words[2])
            self.started.set()
        elif words[:1] == ["exit"] and len(words) == 2:
            self.exit_code = int(words[1])

    def on_end(self) -> None:
        self.ended.set()
        self.started.set()


class SSHCluster:
    """One node per host, over SSH: processes, files and packet filters on the hosts."""

    kind = "ssh"
    python = "python3"

    def __init__(
        self,
        hosts: Sequence[str],
        login: Login,
        *,
        run_dir: Path,
        remote_dir: str,
        keep_data: str = "on-failure",
        code_dir: Path | None = None,
        base_port: int = BASE_PORT,
    ) -> None:
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"one node per host: {list(hosts)} names a host twice")
        self.run_dir = run_dir.resolve()
        self.tag = run_tag(self.run_dir)
        self.remote_dir = remote_dir.rstrip("/") or "/"
        self.base = f"{self.remote_dir}/{DIR_PREFIX}{self.tag}"
        self.keep_data = keep_data
        self.login = login
        self._code_dir = code_dir or Path(__file__).resolve().parents[2] / "vr"
        self._lock = threading.Lock()
        self._procs: dict[str, _Process] = {}
        self._all: list[tuple[str, _Process]] = []
        self._paused: set[str] = set()
        self._created_remote_dir: dict[str, bool] = {}
        self._closed = False
        started = time.monotonic()
        self._hosts: dict[str, Host] = {}
        names = [f"n{i + 1}" for i in range(len(hosts))]
        by_name = dict(zip(names, hosts, strict=True))
        try:
            connected = parallel(names, lambda n: connect(by_name[n], login))
            self._hosts.update(connected)
            addresses = {n: h.address for n, h in connected.items()}
            if len(set(addresses.values())) != len(addresses):
                raise SSHError(
                    f"two hosts are one machine (addresses {addresses}): the packet filter tells nodes "
                    "apart by address, so each node needs a host of its own"
                )
            self.nodes: tuple[SSHNode, ...] = tuple(
                SSHNode(n, i, addresses[n], base_port + i, by_name[n]) for i, n in enumerate(names)
            )
            parallel(names, self._provision)
            preference = os.environ.get(FIREWALL_ENV) or None
            self.firewall = SSHFirewall(
                parallel(names, lambda n: host_firewall(self._hosts[n], self.tag, preference)),
                clients={n: h.controller_address for n, h in self._hosts.items()},
                labels={n: h.label for n, h in self._hosts.items()},
            )
            self.firewall.set_addresses(self.endpoints())
        except BaseException:
            self._abandon()
            raise
        self._by_name = {n.name: n for n in self.nodes}
        self.provision_s = time.monotonic() - started
        logger.info("ssh cluster %s provisioned on %s in %.2f s", self.tag, list(hosts), self.provision_s)

    # -- provisioning -------------------------------------------------------------

    def _provision(self, name: str) -> None:
        """The run's directory on the host: refuse leftovers of this very run, write the marker, ship vr/."""
        host = self._hosts[name]
        made = host.run(["sh", "-c", PROVISION, "sh", self.remote_dir, self.base], sudo=False).stdout.split()
        if "exists" in made:
            raise SSHError(
                f"{host.label}: {self.base} already exists (leftovers of a run with the same tag); "
                f"`ratchet clean --ssh --nodes {host.name}` removes them"
            )
        self._created_remote_dir[name] = "new" in made
        marker = {
            "tag": self.tag,
            "node": name,
            "run_dir": str(self.run_dir),
            "controller": socket.gethostname(),
            "controller_pid": os.getpid(),
            "controller_address": host.controller_address,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "nft_table": f"inet ratchet_{self.tag}",
            "iptables_chains": f"RATCHET-*-{self.tag}",
            "sudo": self.login.sudo,
        }
        with host.sftp().open(f"{self.base}/{MARKER}", "w") as f:
            f.write(json.dumps(marker, indent=1) + "\n")
        host.upload_tree(
            self._code_dir, f"{self.base}/code/vr", skip=lambda p: any(s in p.name for s in CODE_SKIP)
        )

    def _abandon(self) -> None:
        """Provisioning failed: remove what was made and log out (best effort, errors logged)."""
        for name, host in self._hosts.items():
            try:
                host.run(["rm", "-rf", "--", self.base], check=False)
            except SSHError as exc:
                logger.warning("%s: %s", name, exc)
            host.close()

    # -- nodes --------------------------------------------------------------------

    def node(self, name: str) -> SSHNode:
        return self._by_name[name]

    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def endpoints(self) -> dict[str, Endpoint]:
        return {n.name: n.endpoint() for n in self.nodes}

    def host(self, name: str) -> Host:
        return self._hosts[name]

    def path(self, name: str, local: Path) -> str:
        """``local`` (a path in the run directory) as node ``name`` sees it: under the run's remote dir."""
        try:
            relative = local.resolve().relative_to(self.run_dir)
        except ValueError:
            raise ValueError(
                f"{local} is not in the run directory {self.run_dir}; nothing else exists on the hosts"
            ) from None
        return f"{self.base}/run/{relative.as_posix()}" if relative.parts else f"{self.base}/run"

    def make_dirs(self, name: str, local: Path) -> None:
        self._hosts[name].run(["mkdir", "-p", "--", self.path(name, local)])

    def spawn(
        self, name: str, argv: Sequence[str], *, output_path: Path, env: Mapping[str, str] | None = None
    ) -> int:
        """Start ``argv`` as node ``name`` on its host (output appended to ``output_path``'s counterpart)."""
        if name not in self._by_name:
            raise KeyError(f"no node named {name!r} in {self.names()}")
        if self.is_running(name):
            raise RuntimeError(f"{name} is already running (pid {self._procs[name].pid})")
        host = self._hosts[name]
        starts = sum(1 for n, _ in self._all if n == name)
        proc = _Process(f"{self.base}/proc/{name}.{starts}")
        command = [*(["env", *(f"{k}={v}" for k, v in env.items())] if env else []), *argv]
        wrapper = [
            "setsid",
            "-w",
            "sh",
            "-c",
            SPAWN,
            "sh",
            f"{self.base}/code",
            proc.proc,
            self.path(name, output_path),
        ]
        host.stream([*wrapper, *command], on_line=proc.on_line, on_end=proc.on_end)
        if not proc.started.wait(SPAWN_CONFIRM_S) or proc.pid is None:
            raise RuntimeError(f"{host.label}: {name} did not start within {SPAWN_CONFIRM_S} s")
        with self._lock:
            self._procs[name] = proc
            self._all.append((name, proc))
            self._paused.discard(name)
        logger.info("node=%s host=%s pid=%d started", name, host.label, proc.pid)
        return proc.pid

    def _live(self, name: str) -> _Process | None:
        proc = self._procs.get(name)
        return proc if proc is not None and not proc.ended.is_set() else None

    def pid(self, name: str) -> int | None:
        proc = self._live(name)
        return proc.pid if proc is not None else None

    def is_running(self, name: str) -> bool:
        return self._live(name) is not None

    def exit_code(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return None if proc is None else proc.exit_code

    def is_paused(self, name: str) -> bool:
        return name in self._paused

    def _signal_confirm(self, name: str, proc: _Process, signal_name: str, state: str) -> None:
        result = self._hosts[name].run(
            ["sh", "-c", SIGNAL_CONFIRM, "sh", signal_name, str(proc.pid), state], check=False
        )
        if result.code == 1 and proc.ended.wait(STOP_GRACE_S):
            return  # it died before the signal: nothing to pause or resume
        if result.code != 0:
            raise RuntimeError(
                f"{self._hosts[name].label}: {name} (pid {proc.pid}) did not "
                f"{'stop' if state == 'T' else 'continue'} after SIG{signal_name}: {result.stderr.strip()}"
            )

    def pause(self, name: str) -> bool:
        proc = self._live(name)
        if proc is None:
            return False
        self._paused.add(name)
        self._signal_confirm(name, proc, "STOP", "T")
        return True

    def resume(self, name: str) -> bool:
        proc = self._live(name)
        self._paused.discard(name)
        if proc is None:
            return False
        self._signal_confirm(name, proc, "CONT", "R")
        return True

    def _signal(self, name: str, proc: _Process, signal_name: str) -> None:
        proc.ended_by_us = True
        self._hosts[name].run(["kill", "-s", signal_name, str(proc.pid)], check=False)

    def kill(self, name: str, *, wait: bool = True) -> bool:
        """SIGKILL; with ``wait``, until the wrapper saw the node end. True if it was running."""
        proc = self._live(name)
        if proc is None:
            return False
        self._signal(name, proc, "KILL")
        if not wait:
            return True
        if not proc.ended.wait(STOP_GRACE_S):
            raise RuntimeError(
                f"{self._hosts[name].label}: {name} (pid {proc.pid}) still running after SIGKILL"
            )
        self._paused.discard(name)
        logger.info("node=%s pid=%d killed", name, proc.pid)
        return True

    def stop(self, name: str) -> None:
        """Resume if paused, SIGTERM, then SIGKILL after a grace period."""
        proc = self._live(name)
        if proc is None:
            return
        if name in self._paused:
            self.resume(name)
        self._signal(name, proc, "TERM")
        if not proc.ended.wait(STOP_GRACE_S):
            self.kill(name)

    def stop_all(self) -> list[str]:
        running = [n for n in self.names() if self.is_running(n)]
        parallel(running, self.stop)
        return running

    def leftover_processes(self) -> list[int]:
        return [p.pid for p in self._procs.values() if not p.ended.is_set() and p.pid is not None]

    def unexpected_exits(self) -> list[dict[str, int | str]]:
        return [
            {"node": name, "pid": proc.pid or 0, "exit_code": proc.exit_code}
            for name, proc in self._all
            if proc.ended.is_set() and proc.exit_code is not None and not proc.ended_by_us
        ]

    # -- teardown -----------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop what runs, remove the run's rules, download the node files, remove the run's files.

        Every host is handled even if another fails; the failures are raised together at the end
        (the session records them as teardown errors), after the lines of what was done were logged.
        """
        if self._closed:
            return []
        self._closed = True
        lines: list[str] = []
        errors: list[str] = []
        try:
            stopped = self.stop_all()
            lines += [f"stopped {n} on {self._hosts[n].label}" for n in stopped]
        except Exception as exc:
            errors.append(f"stopping nodes: {exc}")
        try:
            lines += self.firewall.teardown_lines()
        except Exception as exc:
            errors.append(f"removing packet-filter rules: {exc}")

        def release(name: str) -> tuple[list[str], list[str]]:
            try:
                return self._release(name), []
            except Exception as exc:
                return [], [f"{self._hosts[name].label}: {type(exc).__name__}: {exc}"]

        for done, failed in parallel(self.names(), release).values():
            lines += done
            errors += failed
        for host in self._hosts.values():
            host.close()
        for line in lines:
            logger.info("teardown: %s", line)
        if errors:
            raise RuntimeError("; ".join(errors) + (" (done: " + "; ".join(lines) + ")" if lines else ""))
        return lines

    def _release(self, name: str) -> list[str]:
        """One host: kill the run's process groups, download its run files, remove its directory."""
        host, lines = self._hosts[name], []
        sids = sorted({p.sid for n, p in self._all if n == name and p.sid is not None})
        leftover = host.run(["sh", "-c", KILL_GROUPS, "sh", *map(str, sids)], check=False).stdout.split()
        if leftover:
            lines.append(f"{host.label}: killed leftover process groups {' '.join(leftover)}")
        fetched = host.download_tar(
            f"{self.base}/run", self.run_dir, exclude=["data"] if self.keep_data == "never" else []
        )
        size = sum((self.run_dir / p).stat().st_size for p in fetched)
        lines.append(
            f"{host.label}: downloaded {len(fetched)} files of {name} ({size / 1e6:.2f} MB) into the run directory"
        )
        host.run(["rm", "-rf", "--", self.base])
        if self._created_remote_dir.get(name):
            host.run(["rmdir", "--", self.remote_dir], check=False)  # only if empty: another run may use it
        gone = host.run(["sh", "-c", 'test -e "$1" && echo present || true', "sh", self.base], sudo=False)
        if gone.stdout.strip():
            raise RuntimeError(f"{self.base} still exists after rm -rf")
        lines.append(f"{host.label}: removed {self.base} (code, run files, process files)")
        return lines


# Kill whole process groups (positional: session ids) and print those that still had members.
KILL_GROUPS = r"""
for sid in "$@"; do
  if kill -s 0 -- "-$sid" 2>/dev/null; then kill -s KILL -- "-$sid" 2>/dev/null; echo "$sid"; fi
done
true
"""
