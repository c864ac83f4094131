"""Leftovers of ssh runs whose controller died (SIGKILL, a lost machine): find them and remove them.

A run writes ``<remote_dir>/ratchet-<tag>/ratchet-run.json`` on each host before
anything else (clusters.ssh.cluster). That marker, with the run's ``proc/*.sid``
files, names everything the run can have left on the host: the node's process
group (the wrapper's session), the packet-filter table ``inet ratchet_<tag>``
(or the ``RATCHET-*-<tag>`` iptables chains) and the directory itself. A run whose
controller is still alive on this machine is kept unless asked (``--all``): its
controller cleans up after itself.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clusters.ssh.connection import Host, Login, connect, parallel

# Positional: remote_dir. Prints "=== <marker path>" then the marker, for every run directory.
LIST_MARKERS = r"""
for m in "$1"/ratchet-*/ratchet-run.json; do
  [ -e "$m" ] || continue
  echo "=== $m"; cat "$m"; echo
done
true
"""

# Positional: the run's directory, its tag, the nft and iptables binaries ("" if absent).
CLEAN_RUN = r"""
base=$1; tag=$2; nft=$3; ipt=$4
for f in "$base"/proc/*.sid; do
  [ -e "$f" ] || continue
  sid=$(cat "$f")
  case $sid in ''|*[!0-9]*) continue;; esac
  if kill -s 0 -- "-$sid" 2>/dev/null; then kill -s KILL -- "-$sid" && echo "killed process group $sid"; fi
done
if [ -n "$nft" ] && "$nft" list table inet "ratchet_$tag" >/dev/null 2>&1; then
  "$nft" delete table inet "ratchet_$tag" && echo "removed nft table inet ratchet_$tag"
fi
if [ -n "$ipt" ]; then
  for kind in PARTITION LOSS PRIMARY-CHAIN CORRUPT; do
    chain="RATCHET-$kind-$tag"
    if "$ipt" -S "$chain" >/dev/null 2>&1; then
      "$ipt" -D OUTPUT -j "$chain"; "$ipt" -F "$chain"; "$ipt" -X "$chain" && echo "removed iptables chain $chain"
    fi
  done
fi
rm -rf -- "$base" && echo "removed $base"
"""


@dataclass(frozen=True, slots=True)
class Leftover:
    host: str
    base: str  # the run's directory on the host
    marker: dict

    @property
    def tag(self) -> str:
        return str(self.marker.get("tag", ""))

    def live(self) -> bool:
        """Its controller is a live process on this machine (then it cleans up after itself)."""
        if self.marker.get("controller") != socket.gethostname():
            return False
        pid = self.marker.get("controller_pid")
        if not isinstance(pid, int):
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"ratchet" in cmdline or b"python" in cmdline

    def describe(self) -> str:
        m = self.marker
        return (
            f"{self.host}: {self.base} (run {m.get('run_dir', '?')}, node {m.get('node', '?')}, "
            f"controller {m.get('controller', '?')} pid {m.get('controller_pid', '?')}, started {m.get('started', '?')})"
        )


def _parse_markers(host: str, text: str) -> list[Leftover]:
    found: list[Leftover] = []
    for block in text.split("=== ")[1:]:
        path, _, body = block.partition("\n")
        try:
            marker = json.loads(body)
        except ValueError:
            marker = {}
        found.append(Leftover(host, path.rsplit("/", 1)[0], marker if isinstance(marker, dict) else {}))
    return found


def find(hosts: Sequence[str], login: Login, remote_dir: str, *, live_too: bool = False) -> list[Leftover]:
    """The run directories (with their rules and processes) left on ``hosts``."""

    def one(name: str) -> list[Leftover]:
        host = connect(name, login)
        try:
            return _parse_markers(
                name, host.run(["sh", "-c", LIST_MARKERS, "sh", remote_dir], sudo=False).stdout
            )
        finally:
            host.close()

    found = [item for items in parallel(list(hosts), one).values() for item in items]
    return [item for item in found if live_too or not item.live()]


def remove(leftovers: Sequence[Leftover], login: Login) -> list[str]:
    """Kill the runs' process groups, delete their tables or chains and directories; what was done."""
    by_host: dict[str, list[Leftover]] = {}
    for item in leftovers:
        by_host.setdefault(item.host, []).append(item)

    def one(name: str) -> list[str]:
        host: Host = connect(name, login)
        try:
            lines = []
            for item in by_host[name]:
                argv = ["sh", "-c", CLEAN_RUN, "sh", item.base, item.tag]
                argv += [host.facts.get("nft", ""), host.facts.get("iptables", "")]
                lines += [f"{host.label}: {line}" for line in host.run(argv).stdout.splitlines() if line]
            return lines
        finally:
            host.close()

    return [line for lines in parallel(list(by_host), one).values() for line in lines]


def default_login(
    *,
    username: str | None,
    private_key: str | None,
    port: int | None,
    sudo: bool,
    strict_host_keys: bool,
    known_hosts: str | None,
) -> Login:
    return Login(
        username=username or "root",  # as in a scenario's [cluster] table
        port=port or 22,
        private_key=private_key,
        known_hosts=known_hosts,
        strict_host_keys=strict_host_keys,
        sudo=sudo,
    )
