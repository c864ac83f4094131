"""Drop packets between chosen nodes with the kernel's packet filter, inside the run's namespace.

Ratchet owns exactly one nftables table, ``inet ratchet``, with one output chain
per fault kind (``partition``, ``loss``). Applying a fault rewrites its chain in
one ``nft -f`` transaction, then reads the table back (``nft -j list chain``)
and refuses to report success unless every rule it asked for is there with the
addresses and port it asked for. Healing deletes the chain; teardown deletes the
whole table, and nothing else, so the run never touches rules it did not create
(and, being in a private network namespace, never the host's).

Which packets belong to which node: by address. Every local node listens on its
own 127.0.0.x and opens its connections to other replicas from that same address
(vr.bus binds them), so every replica-to-replica packet carries its sender's
address as source. "Drop what A sends to B" is therefore
``ip saddr A ip daddr B tcp dport B.port``: the packets A sends on the
connections A opens to B's listener (its handshake and its messages). The
destination port matters for asymmetric grudges: without it, cutting A->B would
also drop A's acknowledgements on the connection B opened to A, so B's messages
would stop reaching A too and a one-way partition would act as a full one. A VR
replica sends only on connections it opened, so this is exactly "B does not
hear A". It needs no privilege beyond the network namespace's own root, which an
unprivileged user gets through a user namespace.

Clients are outside every grudge: the controller's client connections leave
from 127.0.0.1, which no partition rule names, so a client reaches any node it
chooses during a partition (as Jepsen's clients on the control node do).
Loss may name the clients as a destination (an endpoint without a port): then
every packet the node sends to 127.0.0.1 is subject to it, i.e. its replies.

iptables is the fallback where nft is missing (a ``RATCHET-<KIND>`` chain
jumped to from OUTPUT, ``-s``/``-d``/``--dport``, ``-m statistic`` for loss).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TABLE = "ratchet"
FAMILY = "inet"
COMMAND_TIMEOUT_S = 10
KINDS = ("partition", "loss", "primary-chain", "corrupt")  # corrupt: the corrupt nemesis isolates a node
FIREWALL_ENV = "RATCHET_FIREWALL"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How the filter recognises a node: the IPv4 address it sends from and listens on, and its
    listening port (None for the clients, which only ever open connections)."""

    name: str
    host: str
    port: int | None

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError as exc:
            raise FirewallError(
                f"endpoint {self.name}: {self.host!r} is not an IPv4 address; "
                "the packet filter matches nodes by IPv4 source and destination address"
            ) from exc


@dataclass(frozen=True, slots=True)
class Drop:
    """Drop packets that ``src`` sends to ``dst`` (with ``probability`` < 1: drop that fraction)."""

    src: Endpoint
    dst: Endpoint
    probability: float = 1.0

    @property
    def comment(self) -> str:
        return f"{self.src.name}->{self.dst.name}"

    @property
    def percent(self) -> int | None:
        """The drop chance in whole percent (1..99), None for "always"."""
        if self.probability >= 1.0:
            return None
        return max(1, min(99, round(self.probability * 100)))

    def signature(self) -> Signature:
        """What verification compares with the rule read back from the kernel."""
        return (self.comment, self.src.host, self.dst.host, self.dst.port, self.percent)


Signature = tuple[str, str, str, int | None, int | None]


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


def check_read_back(backend: str, kind: str, drops: Sequence[Drop], have: Sequence[Signature]) -> None:
    """Every rule asked for is in the kernel with its addresses, port and chance, and nothing else."""
    want = sorted(repr(d.signature()) for d in drops)
    got = sorted(repr(sig) for sig in have)
    if want != got:
        raise FirewallError(
            f"{kind} rules read back from {backend} do not match what was applied: "
            f"wanted {want}, the kernel has {got}"
        )


class NftFirewall:
    """nftables backend."""

    backend = "nft"

    def _match(self, drop: Drop) -> str:
        rule = f"ip saddr {drop.src.host} ip daddr {drop.dst.host}"
        if drop.dst.port is not None:
            rule += f" tcp dport {drop.dst.port}"
        if drop.percent is not None:
            rule += f" numgen random mod 100 < {drop.percent}"
        return f'{rule} counter drop comment "{drop.comment}"'

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

    def _rules(self, kind: str) -> list[dict]:
        try:
            out = _run(["nft", "-j", "list", "chain", FAMILY, TABLE, kind])
        except FirewallError:
            return []
        return [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]

    def installed(self, kind: str) -> list[str]:
        """Comments (``src->dst``) of the rules of ``kind`` the kernel holds right now."""
        return [str(rule.get("comment", "")) for rule in self._rules(kind)]

    def signatures(self, kind: str) -> list[Signature]:
        """(comment, source, destination, destination port, percent) of each rule, as the kernel has it."""
        found: list[Signature] = []
        for rule in self._rules(kind):
            fields: dict[str, object] = {}
            for expr in rule.get("expr", []):
                match = expr.get("match")
                if not match:
                    continue
                left, right = match.get("left", {}), match.get("right")
                if "payload" in left:
                    fields[f"{left['payload'].get('protocol')}.{left['payload'].get('field')}"] = right
                elif "numgen" in left and match.get("op") == "<":
                    fields["percent"] = right
            found.append(
                (
                    str(rule.get("comment", "")),
                    str(fields.get("ip.saddr", "")),
                    str(fields.get("ip.daddr", "")),
                    _int_or_none(fields.get("tcp.dport")),
                    _int_or_none(fields.get("percent")),
                )
            )
        return found

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        check_read_back(self.backend, kind, drops, self.signatures(kind))

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


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(str(value))


class IptablesFirewall:
    """iptables fallback: one chain per kind, jumped to from OUTPUT."""

    backend = "iptables"

    @staticmethod
    def _chain(kind: str) -> str:
        return f"RATCHET-{kind.upper()}"

    def _rule(self, drop: Drop) -> list[str]:
        rule = ["-s", drop.src.host, "-d", drop.dst.host]
        if drop.dst.port is not None:
            rule += ["-p", "tcp", "--dport", str(drop.dst.port)]
        if drop.percent is not None:
            rule += ["-m", "statistic", "--mode", "random", "--probability", f"{drop.percent / 100:.2f}"]
        return [*rule, "-m", "comment", "--comment", drop.comment, "-j", "DROP"]

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

    def signatures(self, kind: str) -> list[Signature]:
        """(comment, source, destination, destination port, percent) of each rule in our chain."""
        if not self._chain_exists(kind):
            return []
        found: list[Signature] = []
        for line in _run(["iptables", "-S", self._chain(kind)]).splitlines():
            words = shlex.split(line)
            if words[:1] != ["-A"]:
                continue
            options = dict(itertools.pairwise(words[2:]))
            probability = options.get("--probability")
            found.append(
                (
                    options.get("--comment", ""),
                    options.get("-s", "").removesuffix("/32"),
                    options.get("-d", "").removesuffix("/32"),
                    _int_or_none(options.get("--dport")),
                    None if probability is None else round(float(probability) * 100),
                )
            )
        return found

    def installed(self, kind: str) -> list[str]:
        return [sig[0] for sig in self.signatures(kind)]

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        check_read_back(self.backend, kind, drops, self.signatures(kind))

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


def self_test(backend: str | None = None) -> str:
    """Apply, read back, heal and remove one rule of each kind; returns the backend used.

    Run only inside a throwaway namespace (``python -m clusters.namespace -- python -m
    clusters.firewall probe``): this is how ``ratchet doctor`` and scenario validation find out
    that this user can filter packets the way a run will, rather than guessing from file names.
    """
    firewall = choose_firewall(backend)
    a, b = Endpoint("a", "127.0.0.2", 7100), Endpoint("b", "127.0.0.3", 7101)
    clients = Endpoint("clients", "127.0.0.1", None)
    firewall.apply("partition", [Drop(a, b), Drop(b, a)])
    firewall.apply("loss", [Drop(a, b, 0.3), Drop(a, clients, 0.3)])
    if not (firewall.heal("partition") and firewall.heal("loss")):
        raise FirewallError("healing did not find the chains just applied")
    firewall.teardown()
    if not firewall.ruleset_empty_of_ours():
        raise FirewallError("rules left after teardown")
    return firewall.backend


def main(argv: Sequence[str]) -> int:
    from clusters import namespace

    if list(argv[:1]) != ["probe"] or len(argv) > 2:
        print(
            "usage: python -m clusters.namespace -- python -m clusters.firewall probe [nft|iptables]",
            file=sys.stderr,
        )
        return 3
    if not namespace.inside():
        print(
            "error: refusing to touch the host's firewall: run this inside clusters.namespace",
            file=sys.stderr,
        )
        return 3
    try:
        backend = self_test(argv[1] if len(argv) > 1 else None)
    except FirewallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ok {backend}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
