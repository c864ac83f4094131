"""Grudge shapes, target picking, the combined schedule and the register workload, without processes.

Each shape's connectivity claim is checked on the graph networkx builds from
the grudge, for several seeds and sizes; the nemesis schedule and the workload
generator are driven by the simulated clock.
"""

from __future__ import annotations

import random

import networkx as nx
import pytest

from clusters import firewall
from clusters.firewall import Drop, Endpoint, FirewallError, IptablesFirewall, NftFirewall
from core import generator as gen
from core.scenario import NemesisSpec, WorkloadSpec
from nemeses import grudges, packages
from nemeses.faults import pick_targets
from workloads import register

NODES = {n: [f"n{i + 1}" for i in range(n)] for n in (3, 5, 7)}


def undirected_components(grudge: grudges.Grudge, nodes: list[str]) -> list[set[str]]:
    heard = grudges.hears(grudge, nodes)
    both = nx.Graph((a, b) for a, b in heard.edges if heard.has_edge(b, a))
    both.add_nodes_from(nodes)
    return [set(c) for c in nx.connected_components(both)]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [3, 5, 7])
def test_isolating_shapes_split_the_cluster_in_two(seed: int, size: int) -> None:
    nodes = NODES[size]
    for shape in ("one", "primary", "majority", "minority-third", "random"):
        grudge, targets = grudges.compute(shape, nodes, rng=random.Random(seed), primary="n2")
        parts = undirected_components(grudge, nodes)
        assert len(parts) == 2, shape
        assert set(targets) in parts, shape
        if shape in ("one", "primary"):
            assert len(targets) == 1
        if shape == "primary":
            assert targets == ["n2"]
        if shape == "majority":
            assert max(len(p) for p in parts) == size // 2 + 1
        if shape == "minority-third":
            assert len(targets) == max(1, size // 3)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [5, 7])
def test_majorities_ring_every_node_sees_a_majority_and_no_two_the_same(seed: int, size: int) -> None:
    nodes = NODES[size]
    grudge, _ = grudges.compute("majorities-ring", nodes, rng=random.Random(seed), primary=None)
    heard = grudges.hears(grudge, nodes)
    views = [frozenset([n, *heard.predecessors(n)]) for n in nodes]
    assert all(len(v) > size // 2 for v in views)
    assert len(set(views)) == size
    assert nx.is_connected(nx.Graph(heard.to_undirected()))


@pytest.mark.parametrize("seed", range(5))
def test_bridge_connects_two_halves_only_through_one_node(seed: int) -> None:
    nodes = NODES[5]
    grudge, targets = grudges.compute("bridge", nodes, rng=random.Random(seed), primary=None)
    assert len(targets) == 1
    heard = nx.Graph(grudges.hears(grudge, nodes).to_undirected())
    assert nx.is_connected(heard)
    assert list(nx.articulation_points(heard)) == targets


def test_one_way_is_asymmetric() -> None:
    grudge, targets = grudges.compute("one-way", NODES[3], rng=random.Random(1), primary=None)
    speaker = targets[0]
    heard = grudges.hears(grudge, NODES[3])
    for other in NODES[3]:
        if other != speaker:
            assert not heard.has_edge(speaker, other)  # they do not hear it
            assert heard.has_edge(other, speaker)  # it hears them


def test_pick_targets() -> None:
    rng = random.Random(3)
    nodes = NODES[5]
    assert pick_targets("primary", nodes, rng=rng, primary=lambda: "n4") == ["n4"]
    assert len(pick_targets("minority", nodes, rng=rng, primary=lambda: None)) == 2
    assert len(pick_targets("majority", nodes, rng=rng, primary=lambda: None)) == 3
    assert pick_targets("all", nodes, rng=rng, primary=lambda: None) == nodes
    assert pick_targets("primary", nodes, rng=random.Random(1), primary=lambda: None)[0] in nodes


def test_nft_and_iptables_rules_name_sender_receiver_and_its_listening_port() -> None:
    a, b = Endpoint("n1", "127.0.0.2", 7100), Endpoint("n2", "127.0.0.3", 7101)
    clients = Endpoint("clients", "127.0.0.1", port=None)
    nft = NftFirewall()._match(Drop(a, b, 0.25))
    assert nft == (
        "ip saddr 127.0.0.2 ip daddr 127.0.0.3 tcp dport 7101 "
        'numgen random mod 100 < 25 counter drop comment "n1->n2"'
    )
    assert NftFirewall()._match(Drop(b, clients)) == (
        'ip saddr 127.0.0.3 ip daddr 127.0.0.1 counter drop comment "n2->clients"'
    )
    rule = IptablesFirewall()._rule(Drop(a, b, 0.25))
    assert rule[:8] == ["-s", "127.0.0.2", "-d", "127.0.0.3", "-p", "tcp", "--dport", "7101"]
    assert rule[rule.index("--probability") + 1] == "0.25"
    assert rule[-2:] == ["-j", "DROP"]
    assert "--dport" not in IptablesFirewall()._rule(Drop(b, clients))


def test_endpoints_must_be_ipv4_addresses() -> None:
    with pytest.raises(FirewallError, match="not an IPv4 address"):
        Endpoint("n1", "localhost", 7100)


def test_read_back_must_match_addresses_port_and_chance_not_only_names() -> None:
    a, b = Endpoint("n1", "127.0.0.2", 7100), Endpoint("n2", "127.0.0.3", 7101)
    drops = [Drop(a, b, 0.25)]
    firewall.check_read_back("nft", "loss", drops, [("n1->n2", "127.0.0.2", "127.0.0.3", 7101, 25)])
    for wrong in (
        ("n1->n2", "127.0.0.1", "127.0.0.3", 7101, 25),  # another sender
        ("n1->n2", "127.0.0.2", "127.0.0.3", None, 25),  # every port
        ("n1->n2", "127.0.0.2", "127.0.0.3", 7101, None),  # every packet
    ):
        with pytest.raises(FirewallError, match="do not match"):
            firewall.check_read_back("nft", "loss", drops, [wrong])
    with pytest.raises(FirewallError, match="do not match"):
        firewall.check_read_back("nft", "loss", drops, [])


def test_combined_schedule_flips_each_kind_and_final_stops_all() -> None:
    kinds = ("partition", "pause", "kill")
    schedule = gen.nemesis(gen.time_limit(60, packages.schedule(kinds, 5.0, seed=4)))
    history = gen.simulate(schedule, seed=4, concurrency=1)
    completions = [op["f"] for op in history[1::2]]
    state: dict[str, bool] = {}
    for f in completions:
        action, kind = f.split("-", 1)
        assert state.get(kind, False) == (action == "stop"), f"{f} out of order in {completions}"
        state[kind] = action == "start"
    assert set(state) == set(kinds)
    assert 8 <= len(completions) <= 20  # about one change every 5 s for 60 s
    assert packages.final(("kill", "partition")) == [
        {"type": "info", "f": "stop-partition", "value": None},
        {"type": "info", "f": "stop-kill", "value": None},
    ]


def _nemesis_schedule(*, concurrency: int, latency_ns: int, run_seed: int) -> list[tuple[str, int]]:
    """The nemesis ops of a 40 s run beside a busy register workload: (f, 0.1 s since the first).

    Times are rounded: an op that comes due while the nemesis's previous one is still in
    flight (a gap shorter than the latency) waits for it."""
    workload = register.generator(WorkloadSpec(keys=3, rate_hz=0), ops_per_key=10**6)
    faults = packages.schedule(("partition", "pause", "kill"), 5.0, seed=11)
    run = gen.time_limit(40, gen.clients(workload, faults))
    history = gen.simulate(
        run,
        seed=run_seed,
        concurrency=concurrency,
        complete=gen.default_completer(latency_ns),
        max_ops=200_000,
    )
    invokes = [op for op in history if op["process"] == gen.NEMESIS and op["type"] == "info"][::2]
    return [(op["f"], round((op["time_ns"] - invokes[0]["time_ns"]) / 100_000_000)) for op in invokes]


def test_a_seed_names_the_same_faults_whatever_the_clients_do() -> None:
    """The interpreter asks the nemesis's generator for its next op at every client completion;
    with the schedule drawing from its own seeded streams, how often that happens (clients,
    their latency, the run's own seed) changes neither which faults come nor the gaps."""
    base = _nemesis_schedule(concurrency=1, latency_ns=5_000_000, run_seed=1)
    assert len(base) >= 5
    assert _nemesis_schedule(concurrency=5, latency_ns=20_000_000, run_seed=1) == base
    assert _nemesis_schedule(concurrency=3, latency_ns=7_000_000, run_seed=2) == base
    other = gen.simulate(
        gen.nemesis(gen.time_limit(60, packages.schedule(("partition", "pause", "kill"), 5.0, seed=12))),
        seed=1,
        concurrency=1,
    )
    assert [op["f"] for op in other[::2]] != [f for f, _ in base], "another seed, another schedule"


def test_combined_dispatch_refuses_unknown_ops() -> None:
    combined = packages.Combined({})
    with pytest.raises(packages.UnknownNemesisOp):
        combined.invoke("start-partition")
    with pytest.raises(packages.UnknownNemesisOp):
        combined.parse("explode")


def test_package_builds_only_the_chosen_kinds() -> None:
    spec = NemesisSpec(faults=("pause", "kill"))
    package = packages.build(spec, system=None, firewall=NftFirewall(), endpoints={}, rng=random.Random(1))  # type: ignore[arg-type]
    assert package.kinds == ("pause", "kill")
    assert set(package.nemesis.nemeses) == {"pause", "kill"}


def test_register_workload_values_are_unique_and_reproducible() -> None:
    spec = WorkloadSpec(keys=3, rate_hz=0)
    workload = gen.clients(gen.limit(300, register.generator(spec, ops_per_key=40)))
    first = gen.simulate(workload, seed=8, concurrency=4)
    again = gen.simulate(workload, seed=8, concurrency=4)
    assert first == again
    invokes = [op for op in first if op["type"] == "invoke"]
    written = [op["value"] for op in invokes if op["f"] == "write"] + [
        op["value"][1] for op in invokes if op["f"] == "cas"
    ]
    assert len(written) == len(set(written))
    assert {op["f"] for op in invokes} == {"read", "write", "cas"}
    assert all(op["value"] is None for op in invokes if op["f"] == "read")
    keys = {op["key"] for op in invokes}
    assert len(keys) > 3  # keys rotate after ops_per_key operations
    per_key: dict[int, int] = {}
    for op in invokes:
        per_key[op["key"]] = per_key.get(op["key"], 0) + 1
    assert max(per_key.values()) <= 40


def test_register_stagger_limits_the_rate() -> None:
    spec = WorkloadSpec(keys=2, rate_hz=100)
    history = gen.simulate(gen.clients(gen.time_limit(2.0, register.generator(spec))), seed=1, concurrency=5)
    invokes = [op for op in history if op["type"] == "invoke"]
    assert 150 <= len(invokes) <= 250  # 100 ops/s for 2 s, staggered


def test_register_invoke_classifies_outcomes() -> None:
    from core.system import OpFailed, OpIndeterminate

    class Scripted:
        last_node = "n1"

        def __init__(self, outcome: BaseException | None) -> None:
            self.outcome = outcome

        def read(self, key: str) -> int:
            if self.outcome:
                raise self.outcome
            return 7

        def write(self, key: str, value: int) -> None:
            if self.outcome:
                raise self.outcome

        def cas(self, key: str, old: int, new: int) -> None:
            if self.outcome:
                raise self.outcome

        def close(self) -> None:
            pass

    read = {"f": "read", "key": 1, "value": None}
    cas = {"f": "cas", "key": 1, "value": [1, 2]}
    assert register.invoke(Scripted(None), read) == {"type": "ok", "value": 7}
    assert register.invoke(Scripted(OpFailed("cas-mismatch")), cas)["type"] == "fail"
    assert register.invoke(Scripted(OpIndeterminate("timeout")), cas) == {
        "type": "info",
        "value": [1, 2],
        "error": "timeout",
    }
    assert register.invoke(Scripted(ConnectionResetError("reset")), read)["type"] == "info"


class _Moving:
    """A system whose primary is a different node each time it is asked (a view change per ask)."""

    def __init__(self, answers: list[str | None]) -> None:
        self.answers, self.asked = list(answers), 0

    def node_names(self) -> tuple[str, ...]:
        return ("n1", "n2", "n3")

    def primary(self) -> str | None:
        self.asked += 1
        return self.answers.pop(0) if self.answers else None

    def pause(self, node: str) -> bool:
        return True

    def resume(self, node: str) -> bool:
        return True


class _RecordingFirewall:
    def __init__(self) -> None:
        self.applied: list[list[Drop]] = []

    def apply(self, kind: str, drops: list[Drop]) -> None:
        self.applied.append(list(drops))

    def heal(self, kind: str) -> bool:
        return True


def test_a_together_batch_aims_every_primary_fault_at_one_node() -> None:
    """Pause the primary, then cut the primary off: both faults hit the node the batch first named,
    though the system names a different primary at every ask (a view change in between)."""
    system = _Moving(["n2", "n1", "n3", "n1", "n2"])
    spec = NemesisSpec(
        faults=("pause", "partition"), schedule="together", pause_targets=("primary",), grudges=("primary",)
    )
    endpoints = {n: Endpoint(n, f"127.0.0.{i + 1}", 7000) for i, n in enumerate(system.node_names())}
    package = packages.build(
        spec,
        system=system,
        firewall=_RecordingFirewall(),
        endpoints=endpoints,
        rng=random.Random(1),  # type: ignore[arg-type]
    )
    batches = []
    for _ in range(2):
        done = [
            package.nemesis.invoke(f)
            for f in ("start-pause", "start-partition", "stop-partition", "stop-pause")
        ]
        batches.append((done[0]["targets"], done[1]["targets"]))
    assert batches == [(["n2"], ["n2"]), (["n1"], ["n1"])], "one ask per batch; the next batch asks again"
    assert system.asked == 2


def test_a_together_batch_with_no_primary_picks_one_node_for_all_its_faults() -> None:
    batch = packages.BatchPrimary(_Moving([None] * 100), random.Random(4), wait_s=0.2)  # type: ignore[arg-type]
    batch.open()
    first = batch.primary()
    assert first in ("n1", "n2", "n3") and batch.primary() == first
    batch.close()
    assert batch.primary() is None  # outside a batch: the system's own answer
