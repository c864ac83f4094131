"""Partitions and loss between node containers: nftables inside each container, Jepsen style.

A rule "drop what A sends to B" is installed in A's own network namespace (its
container), on its output hook, with the match :mod:`clusters.firewall` uses
(``ip saddr A ip daddr B tcp dport B.port``), so the semantics of every grudge are
those of the local home. Each container holds its own ``inet ratchet`` table; applying a
fault rewrites the fault's chain in every container (one ``nft`` transaction each, in
parallel) and reads each back; a container that holds no rule of the fault gets an
empty chain, so a new grudge replaces the old one everywhere.

The controller's clients reach the nodes from the run network's gateway address (the
host's end of the bridge), not 127.0.0.1: a drop whose destination is the clients
(an endpoint without a port, :data:`nemeses.faults.CLIENTS`) is installed for the
gateway address.

Nothing here outlives the run: the rules live in the containers' network namespaces,
which go when the containers are removed (on close, on Ctrl-C, or by ``ratchet clean``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from clusters.firewall import FAMILY, KINDS, TABLE, Drop, Endpoint, FirewallError, NftFirewall, Signature

Exec = Callable[[Sequence[str]], tuple[int, str]]  # argv run as root in a container: (exit code, output)


class ContainerNft(NftFirewall):
    """nftables in one container, reached by ``docker exec`` (same rules and read-back as the local one)."""

    def __init__(self, name: str, run: Exec) -> None:
        self.name, self._exec = name, run

    def _nft(self, *args: str) -> str:
        code, out = self._exec(["nft", *args])
        if code != 0:
            raise FirewallError(f"nft {' '.join(args)} in {self.name} failed (exit {code}): {out.strip()}")
        return out

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        assert kind in KINDS, kind
        lines = [
            f"add table {FAMILY} {TABLE}",
            f"add chain {FAMILY} {TABLE} {kind} {{ type filter hook output priority {KINDS.index(kind)}; policy accept; }}",
            f"flush chain {FAMILY} {TABLE} {kind}",
            *(f"add rule {FAMILY} {TABLE} {kind} {self._match(d)}" for d in drops),
        ]
        self._nft("\n".join(lines))  # one argument: nft reads it as one file, one transaction
        self.verify(kind, drops)

    def _rules(self, kind: str) -> list[dict]:
        code, out = self._exec(["nft", "-j", "list", "chain", FAMILY, TABLE, kind])
        if code != 0:
            return []
        return [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]

    def _has_table(self) -> bool:
        out = self._nft("-j", "list", "tables")
        return any(
            i["table"]["name"] == TABLE and i["table"]["family"] == FAMILY
            for i in json.loads(out)["nftables"]
            if "table" in i
        )

    def _delete(self, *what: str) -> bool:
        """``nft delete`` in one exec: True if it deleted, False if there was nothing to delete."""
        code, out = self._exec(["nft", "delete", *what])
        if code == 0:
            return True
        if "No such file or directory" in out:
            return False
        raise FirewallError(f"nft delete {' '.join(what)} in {self.name} failed (exit {code}): {out.strip()}")

    def heal(self, kind: str) -> bool:
        return self._delete("chain", FAMILY, TABLE, kind)

    def teardown(self) -> bool:
        return self._delete("table", FAMILY, TABLE)


class DockerFirewall:
    """The run's packet filter: one :class:`ContainerNft` per node, driven together."""

    backend = "nft"

    def __init__(
        self, nodes: Mapping[str, ContainerNft], *, by_address: Mapping[str, str], gateway: str
    ) -> None:
        self._nodes = dict(nodes)  # node name -> its container's filter
        self._by_address = dict(by_address)  # node address -> node name
        self.gateway = gateway
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self._nodes)), thread_name_prefix="docker-nft")

    def _placed(self, drops: Sequence[Drop]) -> dict[str, list[Drop]]:
        """Each drop on its source's container; the clients' address is the gateway's."""
        placed: dict[str, list[Drop]] = {name: [] for name in self._nodes}
        for drop in drops:
            source = self._by_address.get(drop.src.host)
            if source is None:
                raise FirewallError(f"{drop.comment}: {drop.src.host} is not a node of this run")
            dst = drop.dst
            if dst.port is None and dst.host not in self._by_address:
                dst = Endpoint(dst.name, self.gateway, None)
            placed[source].append(replace(drop, dst=dst))
        return placed

    def _each(self, call: Callable[[str, ContainerNft], Any]) -> dict[str, Any]:
        futures = {name: self._pool.submit(call, name, nft) for name, nft in self._nodes.items()}
        results, errors = {}, []
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except FirewallError as exc:
                errors.append(str(exc))
        if errors:
            raise FirewallError("; ".join(errors))
        return results

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        placed = self._placed(drops)
        self._each(lambda name, nft: nft.apply(kind, placed[name]))

    def verify(self, kind: str, drops: Sequence[Drop]) -> None:
        placed = self._placed(drops)
        self._each(lambda name, nft: nft.verify(kind, placed[name]))

    def signatures(self, kind: str) -> list[Signature]:
        return [sig for sigs in self._each(lambda _n, nft: nft.signatures(kind)).values() for sig in sigs]

    def installed(self, kind: str) -> list[str]:
        return [sig[0] for sig in self.signatures(kind)]

    def heal(self, kind: str) -> bool:
        return any(self._each(lambda _n, nft: nft.heal(kind)).values())

    def teardown(self) -> bool:
        return any(self._each(lambda _n, nft: nft.teardown()).values())

    def ruleset_empty_of_ours(self) -> bool:
        return all(self._each(lambda _n, nft: not nft._has_table()).values())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)  # a hung exec must not hold up teardown
