"""Partitions and loss on remote hosts: each host filters what its own node sends (Jepsen's way).

The rule for "drop what A sends to B" is the local home's (clusters.firewall):
``ip saddr A ip daddr B tcp dport B.port`` on the output hook, installed on A's
host. Each host gets the run's own table, ``inet ratchet_<tag>`` (iptables:
``RATCHET-<KIND>-<tag>`` chains jumped to from OUTPUT), so two runs sharing a
host never touch each other's rules and teardown deletes exactly this run's.
Every apply is read back from the host's kernel (``nft -j list chain``) and
compared with what was asked, as locally.

The clients: the nemeses name them as ``127.0.0.1`` (where the local home's
controller sits); on a host they are the controller's address as that host sees
it, and only what the node sends from its listening port is dropped, so the SSH
connection that carries these very commands is never subject to a loss rule.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Mapping, Sequence

from clusters.firewall import KINDS, Drop, Endpoint, FirewallError, IptablesFirewall, NftFirewall, Signature
from clusters.firewall import check_read_back as _check_read_back
from clusters.ssh.connection import Host, SSHError, parallel

logger = logging.getLogger(__name__)

CLIENTS_HOST = "127.0.0.1"  # how nemeses.faults names the clients (the local controller's address)

Runner = Callable[[Sequence[str], str | None], str]


FIREWALL_TIMEOUT_S = 15.0


def _host_runner(host: Host) -> Runner:
    """Every firewall script is idempotent (a chain is flushed and rewritten, a delete checks first),
    so a command whose session stalled is sent once more on a new channel before giving up."""

    def run(argv: Sequence[str], stdin: str | None = None) -> str:
        for attempt in (1, 2):
            try:
                return host.run(argv, stdin=stdin, timeout_s=FIREWALL_TIMEOUT_S).stdout
            except SSHError as exc:
                if attempt == 1 and "TimeoutError" in str(exc):
                    logger.warning("%s; sending it again", exc)
                    continue
                raise FirewallError(str(exc) + (f"\ninput:\n{stdin}" if stdin else "")) from exc
        raise AssertionError("unreachable")

    return run


class RemoteNft(NftFirewall):
    """nft on one host, in the run's own table (the local class's rule text and read-back parsing).

    Each operation is one remote command (a constant script, the table and chain as its
    arguments): on a loaded host every SSH command costs a process start or two, and a
    partition must not take seconds to inject.
    """

    def __init__(self, run: Runner, table: str, nft: str = "nft") -> None:
        self._run, self.table, self.nft = run, table, nft
        self._listing: str | None = None

    def _match(self, drop: Drop) -> str:
        rule = super()._match(drop)
        if drop.dst.port is None and drop.src.port is not None:  # to the clients: the node's replies only
            rule = rule.replace(
                f"ip daddr {drop.dst.host}", f"ip daddr {drop.dst.host} tcp sport {drop.src.port}", 1
            )
        return rule

    def _script(self, script: str, *args: str, stdin: str | None = None) -> str:
        return self._run(["sh", "-c", script, "sh", self.nft, self.table, *args], stdin)

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        """Rewrite the chain of ``kind`` in one transaction and read it back, in one command."""
        assert kind in KINDS, kind
        t = f"inet {self.table}"
        lines = [
            f"add table {t}",
            f"add chain {t} {kind} {{ type filter hook output priority {KINDS.index(kind)}; policy accept; }}",
            f"flush chain {t} {kind}",
            *(f"add rule {t} {kind} {self._match(d)}" for d in drops),
        ]
        listing = self._script(NFT_APPLY, kind, stdin="\n".join(lines) + "\n")
        _check_read_back(self.backend, kind, drops, self._signatures_of(listing))

    def _signatures_of(self, listing: str) -> list[Signature]:
        self._listing = listing
        try:
            return NftFirewall.signatures(self, "")
        finally:
            self._listing = None

    def _rules(self, kind: str) -> list[dict]:
        listing = self._listing if self._listing is not None else self._script(NFT_LIST, kind)
        if not listing.strip():
            return []
        return [item["rule"] for item in json.loads(listing)["nftables"] if "rule" in item]

    def heal(self, kind: str) -> bool:
        return self._script(NFT_DELETE_CHAIN, kind).strip() == "deleted"

    def _has_table(self) -> bool:
        return self._script(NFT_HAS_TABLE).strip() == "yes"

    def teardown(self) -> bool:
        return self._script(NFT_DELETE_TABLE).strip() == "deleted"


# The scripts' positional parameters: $1 the nft binary, $2 the table (family inet), $3 the chain.
NFT_APPLY = '"$1" -f - && "$1" -j list chain inet "$2" "$3"'
NFT_LIST = 'if "$1" list chain inet "$2" "$3" >/dev/null 2>&1; then "$1" -j list chain inet "$2" "$3"; fi'
NFT_HAS_TABLE = 'if "$1" list table inet "$2" >/dev/null 2>&1; then echo yes; fi'
NFT_DELETE_CHAIN = 'if "$1" list chain inet "$2" "$3" >/dev/null 2>&1; then "$1" delete chain inet "$2" "$3" && echo deleted; fi'
NFT_DELETE_TABLE = (
    'if "$1" list table inet "$2" >/dev/null 2>&1; then "$1" delete table inet "$2" || exit 1; '
    'if "$1" list table inet "$2" >/dev/null 2>&1; then echo "table still present" >&2; exit 1; fi; '
    "echo deleted; fi"
)


class RemoteIptables(IptablesFirewall):
    """iptables on one host: ``RATCHET-<KIND>-<tag>`` chains, the local class's rule and parsing."""

    def __init__(self, run: Runner, tag: str, iptables: str = "iptables") -> None:
        self._ipt, self.tag = run, tag
        self.iptables = iptables

    def _run(self, argv: Sequence[str], stdin: str | None) -> str:
        return self._ipt([self.iptables, *argv[1:]] if argv[:1] == ["iptables"] else argv, stdin)

    def _chain(self, kind: str) -> str:  # type: ignore[override]
        return f"RATCHET-{kind.upper()}-{self.tag}"

    def _rule(self, drop: Drop) -> list[str]:
        rule = super()._rule(drop)
        if drop.dst.port is None and drop.src.port is not None:
            rule[4:4] = ["-p", "tcp", "--sport", str(drop.src.port)]
        return rule

    def _chain_exists(self, kind: str) -> bool:
        try:
            self._run(["iptables", "-S", self._chain(kind)], None)
        except FirewallError:
            return False
        return True

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        chain = self._chain(kind)
        if not self._chain_exists(kind):
            self._run(["iptables", "-N", chain], None)
            self._run(["iptables", "-I", "OUTPUT", "-j", chain], None)
        self._run(["iptables", "-F", chain], None)
        for drop in drops:
            self._run(["iptables", "-A", chain, *self._rule(drop)], None)
        self.verify(kind, drops)

    def signatures(self, kind: str) -> list[Signature]:
        if not self._chain_exists(kind):
            return []
        return _parse_iptables(self._run(["iptables", "-S", self._chain(kind)], None))

    def heal(self, kind: str) -> bool:
        if not self._chain_exists(kind):
            return False
        chain = self._chain(kind)
        self._run(["iptables", "-D", "OUTPUT", "-j", chain], None)
        self._run(["iptables", "-F", chain], None)
        self._run(["iptables", "-X", chain], None)
        return True


def _parse_iptables(text: str) -> list[Signature]:
    import itertools

    found: list[Signature] = []
    for line in text.splitlines():
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
                int(options["--dport"]) if "--dport" in options else None,
                None if probability is None else round(float(probability) * 100),
            )
        )
    return found


HostFirewall = RemoteNft | RemoteIptables


def host_firewall(host: Host, tag: str, preference: str | None) -> HostFirewall:
    """nft where the host has it, else iptables (``preference`` forces one); FirewallError if neither."""
    run = _host_runner(host)
    if preference in (None, "nft") and host.facts.get("nft"):
        return RemoteNft(run, f"ratchet_{tag}", host.facts["nft"])
    if preference in (None, "iptables") and host.facts.get("iptables"):
        return RemoteIptables(run, tag, host.facts["iptables"])
    raise FirewallError(
        f"{host.label}: {preference or 'nft or iptables'} is not installed on the host "
        "(apt-get install nftables there)"
    )


class SSHFirewall:
    """The run's packet filter over every host: the same methods as clusters.firewall's backends.

    ``hosts`` maps each node's name to its host's filter; a drop is installed on
    its source node's host. ``clients`` maps each node to the controller's address
    as its host sees it.
    """

    def __init__(
        self, hosts: Mapping[str, HostFirewall], clients: Mapping[str, str], labels: Mapping[str, str]
    ):
        self._hosts, self._clients, self._labels = dict(hosts), dict(clients), dict(labels)
        self._by_address: dict[str, str] = {}
        self._removed: list[str] = []
        backends = {fw.backend for fw in self._hosts.values()}
        self.backend = (
            backends.pop()
            if len(backends) == 1
            else "mixed: " + ", ".join(f"{n} {fw.backend}" for n, fw in self._hosts.items())
        )

    def set_addresses(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._by_address = {e.host: name for name, e in endpoints.items()}

    def _owner(self, drop: Drop) -> str:
        owner = self._by_address.get(drop.src.host)
        if owner is None:
            raise FirewallError(f"{drop.comment}: {drop.src.host} is not the address of a node of this run")
        return owner

    def _on_host(self, drop: Drop) -> Drop:
        """``drop`` as its source node's host filters it (the clients at the controller's address)."""
        if drop.dst.host != CLIENTS_HOST:
            return drop
        owner = self._owner(drop)
        return Drop(drop.src, Endpoint(drop.dst.name, self._clients[owner], drop.dst.port), drop.probability)

    def _split(self, drops: Sequence[Drop]) -> dict[str, list[Drop]]:
        by_node: dict[str, list[Drop]] = {name: [] for name in self._hosts}
        for drop in drops:
            by_node[self._owner(drop)].append(self._on_host(drop))
        return by_node

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        """Install ``drops`` as ``kind``: each host's share (read back), on all hosts at once;
        hosts without a share lose theirs."""
        shares = self._split(drops)

        def one(name: str) -> None:
            if shares[name]:
                self._hosts[name].apply(kind, shares[name])
            else:
                self._hosts[name].heal(kind)

        parallel(list(shares), one)

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        for name, share in self._split(drops).items():
            _check_read_back(self._hosts[name].backend, kind, share, self._hosts[name].signatures(kind))

    def signatures(self, kind: str) -> list[Signature]:
        found = parallel(list(self._hosts), lambda name: self._hosts[name].signatures(kind))
        return [sig for sigs in found.values() for sig in sigs]

    def installed(self, kind: str) -> list[str]:
        return [sig[0] for sig in self.signatures(kind)]

    def heal(self, kind: str) -> bool:
        healed = parallel(list(self._hosts), lambda name: self._hosts[name].heal(kind))
        return any(healed.values())

    def teardown(self) -> bool:
        """Remove the run's rules from every host (the runner's teardown); True if there were some.
        What was removed where is kept for :meth:`teardown_lines` (the cluster's teardown record)."""
        lines = self._remove()
        self._removed += lines
        return bool(lines)

    def teardown_lines(self) -> list[str]:
        """Remove what is left of the run's rules; one line per host that had some, earlier removals included."""
        lines, self._removed = [*self._removed, *self._remove()], []
        return lines

    def _remove(self) -> list[str]:

        def one(name: str) -> str | None:
            fw = self._hosts[name]
            what = f"table inet {fw.table}" if isinstance(fw, RemoteNft) else f"chains RATCHET-*-{fw.tag}"
            return f"{self._labels[name]}: removed {fw.backend} {what}" if fw.teardown() else None

        return [line for line in parallel(list(self._hosts), one).values() if line]

    def ruleset_empty_of_ours(self) -> bool:
        return all(
            parallel(list(self._hosts), lambda name: self._hosts[name].ruleset_empty_of_ours()).values()
        )
