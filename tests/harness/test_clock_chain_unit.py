"""The primary-chain nemesis's sequence, without processes: scripted statuses, recorded firewall changes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from clusters.firewall import Drop, Endpoint
from nemeses.chain import PrimaryChainNemesis

ENDPOINTS = {f"n{i + 1}": Endpoint(f"n{i + 1}", f"127.0.0.{i + 2}", 7100 + i) for i in range(3)}


class RecordingFirewall:
    """Keeps the drops of each apply, as the packet filter would hold them."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, list[Drop]]] = []
        self.healed: list[str] = []

    def apply(self, kind: str, drops: Sequence[Drop]) -> None:
        self.applied.append((kind, list(drops)))

    def heal(self, kind: str) -> bool:
        self.healed.append(kind)
        return True


class ScriptedCluster:
    """Statuses that change on every poll: view 1 led by n1; then n2 leads view 2, first re-committing
    the op it inherited (op 10), then committing op 11, prepared in its own view."""

    def __init__(self) -> None:
        self.polls = 0

    def node_names(self) -> tuple[str, ...]:
        return ("n1", "n2", "n3")

    def primary(self) -> str | None:
        return "n1"

    def statuses(self) -> dict[str, dict[str, Any]]:
        self.polls += 1
        if self.polls == 1:
            return {"n1": {"status": "normal", "view": 1, "primary": 0, "op": 10, "commit": 9}}
        commit = 10 if self.polls < 5 else 11
        return {
            "n1": {"status": "normal", "view": 1, "primary": 0, "op": 14, "commit": 9},
            "n2": {"status": "normal", "view": 2, "primary": 1, "op": 10, "commit": commit},
            "n3": {"status": "normal", "view": 2, "primary": 1, "op": 10, "commit": commit},
        }


def isolated(drops: list[Drop]) -> set[str]:
    """The nodes every other node has lost both ways."""
    pairs = {(d.src.name, d.dst.name) for d in drops}
    return {n for n in ENDPOINTS if all((n, o) in pairs and (o, n) in pairs for o in ENDPOINTS if o != n)}


def test_the_chain_moves_the_isolation_once_the_successor_committed_in_its_own_view() -> None:
    firewall = RecordingFirewall()
    clock = [0.0]
    nemesis = PrimaryChainNemesis(
        system=ScriptedCluster(),  # type: ignore[arg-type]
        firewall=firewall,  # type: ignore[arg-type]
        endpoints=ENDPOINTS,
        rng=random.Random(1),
        now_s=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    value = nemesis.start()
    assert [isolated(drops) for _, drops in firewall.applied] == [{"n1"}, {"n2"}]
    assert value["isolated"] == ["n1", "n2"] and value["targets"] == ["n2"]
    assert value["chain"][1]["commit"] == 11, "an inherited op committing is not the successor's progress"
    assert "stalled" not in value
    assert nemesis.stop() == {"targets": ["n2"], "healed": True}
    assert firewall.healed == ["primary-chain"] and nemesis.active is None


def test_without_a_successor_the_chain_stalls_and_says_so() -> None:
    class Stuck(ScriptedCluster):
        def statuses(self) -> dict[str, dict[str, Any]]:
            return {"n1": {"status": "normal", "view": 1, "primary": 0, "op": 10, "commit": 9}}

    firewall = RecordingFirewall()
    clock = [0.0]
    nemesis = PrimaryChainNemesis(
        system=Stuck(),  # type: ignore[arg-type]
        firewall=firewall,  # type: ignore[arg-type]
        endpoints=ENDPOINTS,
        rng=random.Random(1),
        wait_s=1.0,
        now_s=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    value = nemesis.start()
    assert value["isolated"] == ["n1"] and "no successor" in value["stalled"]
    assert len(firewall.applied) == 1
