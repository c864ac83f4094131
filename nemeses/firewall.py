"""Drop packets between chosen nodes with the kernel's packet filter, inside the run's namespace.

Ratchet owns exactly one nftables table, ``inet ratchet``, with one output chain
per fault kind (``partition``, ``loss``). Applying a fault rewrites its chain in
one ``nft -f`` transaction, then reads the table back (``nft -j list table``)
and refuses to report success unless every rule it asked for is there. Healing
deletes the chain; teardown deletes the whole table, and nothing else, so the
run never touches rules it did not create (and, being in a private network
namespace, never the host's).

Which packets belong to which node: every local node listens on its own
127.0.0.x address, but a TCP connection it *opens* leaves from 127.0.0.1 unless
it binds its source address, so the source address cannot tell nodes apart.
As root, each node runs with its own group id and rules match the sending
socket's group (``meta skgid``) and the destination address; that cuts both
the connections a node opens and its answers on connections others opened.
Without root, rules match the source address, which only works for nodes that
bind their outgoing connections to their own address.

iptables is the fallback where nft is missing (a ``RATCHET-<KIND>`` chain
jumped to from OUTPUT, ``-m owner --gid-owner`` / ``-s``, ``-m statistic`` for
loss).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TABLE = "ratchet"
FAMILY = "inet"
COMMAND_TIMEOUT_S = 10
KINDS = ("partition", "loss")
FIREWALL_ENV = "RATCHET_FIREWALL"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How the filter recognises a node: its address, and the group id its process runs with."""

    name: str
    host: str
    gid: int | None


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop packets that ``src`` sends to ``dst`` (with ``probability`` < 1: drop that fraction)."""

    src: Endpoint
    dst: Endpoint
    probability: float = 1.0


class FirewallError(RuntimeError):
    """A rule could not be installed, verified or removed; the message has the command and stderr."""


def _run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True
        )
    except subprocess.CalledProcessError as exc:
        raise FirewallError(
            f"{' '.join(argv)} failed (exit {exc.returncode}): {exc.stderr.strip()}"
            + (f"\ninput:\n{stdin}" if stdin else "")
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise FirewallError(f"{' '.join(argv)} timed out after {COMMAND_TIMEOUT_S} s") from exc
    return proc.stdout


class NftFirewall:
    """nftables backend."""

    backend = "nft"

    def _match(self, drop: Drop) -> str:
        sender = f"meta skgid {drop.src.gid}" if drop.src.gid is not None else f"ip saddr {drop.src.host}"
        rule = f"{sender} ip daddr {drop.dst.host}"
        if drop.probability < 1.0:
            percent = max(1, min(99, round(drop.probability * 100)))
            rule += f" numgen random mod 100 < {percent}"
        return f'{rule} counter drop comment "{drop.src.name}->{drop.dst.name}"'

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        assert kind in KINDS, kind
        lines = [f"add table {FAMILY} {TABLE}"]
        lines.append(
            f"add chain {FAMILY} {TABLE} {kind} {{ type filter hook output priority {KINDS.index(kind)}; policy accept; }}"
        )
        lines.append(f"flush chain {FAMILY} {TABLE} {kind}")
        lines.extend(f"add rule {FAMILY} {TABLE} {kind} {self._match(d)}" for d in drops)
        _run(["nft", "-f", "-"], stdin="\n".join(lines) + "\n")
        self.verify(kind, drops)

    def installed(self, kind: str) -> list[str]:
        """Comments (``src->dst``) of the rules of ``kind`` the kernel holds right now."""
        try:
            out = _run(["nft", "-j", "list", "chain", FAMILY, TABLE, kind])
        except FirewallError:
            return []
        rules = [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]
        return [str(rule.get("comment", "")) for rule in rules]

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        want = sorted(f"{d.src.name}->{d.dst.name}" for d in drops)
        have = sorted(self.installed(kind))
        if want != have:
            raise FirewallError(
                f"{kind} rules read back from nft do not match: wanted {want}, kernel has {have}"
            )

    def heal(self, kind: str) -> bool:
        """Remove the chain of ``kind``; True if there was one."""
        if not self._has_table():
            return False
        out = _run(["nft", "-j", "list", "table", FAMILY, TABLE])
        chains = [i["chain"]["name"] for i in json.loads(out)["nftables"] if "chain" in i]
        if kind not in chains:
            return False
        _run(["nft", "delete", "chain", FAMILY, TABLE, kind])
        if self.installed(kind):
            raise FirewallError(f"{kind} chain still present after delete")
        return True

    def _has_table(self) -> bool:
        out = _run(["nft", "-j", "list", "tables"])
        return any(
            i["table"]["name"] == TABLE and i["table"]["family"] == FAMILY
            for i in json.loads(out)["nftables"]
            if "table" in i
        )

    def teardown(self) -> bool:
        """Delete Ratchet's table (and only it); True if it existed."""
        if not self._has_table():
            return False
        _run(["nft", "delete", "table", FAMILY, TABLE])
        if self._has_table():
            raise FirewallError(f"table {FAMILY} {TABLE} still present after delete")
        return True

    def ruleset_empty_of_ours(self) -> bool:
        return not self._has_table()


class IptablesFirewall:
    """iptables fallback: one chain per kind, jumped to from OUTPUT."""

    backend = "iptables"

    @staticmethod
    def _chain(kind: str) -> str:
        return f"RATCHET-{kind.upper()}"

    def _rule(self, drop: Drop) -> list[str]:
        sender = (
            ["-m", "owner", "--gid-owner", str(drop.src.gid)]
            if drop.src.gid is not None
            else ["-s", drop.src.host]
        )
        rule = [*sender, "-d", drop.dst.host]
        if drop.probability < 1.0:
            rule += ["-m", "statistic", "--mode", "random", "--probability", f"{drop.probability:.4f}"]
        return [*rule, "-m", "comment", "--comment", f"{drop.src.name}->{drop.dst.name}", "-j", "DROP"]

    def _chain_exists(self, kind: str) -> bool:
        return (
            subprocess.run(
                ["iptables", "-S", self._chain(kind)],
                capture_output=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            ).returncode
            == 0
        )

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        chain = self._chain(kind)
        if not self._chain_exists(kind):
            _run(["iptables", "-N", chain])
            _run(["iptables", "-I", "OUTPUT", "-j", chain])
        _run(["iptables", "-F", chain])
        for drop in drops:
            _run(["iptables", "-A", chain, *self._rule(drop)])
        self.verify(kind, drops)

    def installed(self, kind: str) -> list[str]:
        if not self._chain_exists(kind):
            return []
        out = _run(["iptables", "-S", self._chain(kind)])
        found = []
        for line in out.splitlines():
            if "--comment" in line:
                found.append(line.split("--comment", 1)[1].split()[0].strip('"'))
        return found

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        want = sorted(f"{d.src.name}->{d.dst.name}" for d in drops)
        have = sorted(self.installed(kind))
        if want != have:
            raise FirewallError(
                f"{kind} rules read back from iptables do not match: wanted {want}, have {have}"
            )

    def heal(self, kind: str) -> bool:
        if not self._chain_exists(kind):
            return False
        chain = self._chain(kind)
        _run(["iptables", "-D", "OUTPUT", "-j", chain])
        _run(["iptables", "-F", chain])
        _run(["iptables", "-X", chain])
        return True

    def teardown(self) -> bool:
        return any([self.heal(kind) for kind in KINDS])

    def ruleset_empty_of_ours(self) -> bool:
        return not any(self._chain_exists(kind) for kind in KINDS)


Firewall = NftFirewall | IptablesFirewall


def choose_firewall(preference: str | None = None) -> Firewall:
    """nft where installed, else iptables; FirewallError if neither.

    ``preference`` (or the environment variable RATCHET_FIREWALL) = "nft" or
    "iptables" forces one backend, e.g. to test the fallback on a machine that has both.
    """
    preference = preference or os.environ.get(FIREWALL_ENV) or None
    if preference not in (None, "nft", "iptables"):
        raise FirewallError(f"{FIREWALL_ENV}={preference!r}: accepted values are nft and iptables")
    if preference in (None, "nft") and shutil.which("nft"):
        return NftFirewall()
    if preference in (None, "iptables") and shutil.which("iptables"):
        return IptablesFirewall()
    wanted = preference or "nft or iptables"
    raise FirewallError(f"{wanted} is not installed: apt-get install nftables (or iptables)")
