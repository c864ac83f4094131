"""Partition shapes ("grudges") computed on the cluster graph with networkx.

A grudge maps each node to the set of nodes it must not hear from. Shapes
follow Jepsen's names: ``one`` (isolate a random node), ``primary`` (isolate
the current primary), ``majority`` (a random majority and the minority cannot
talk), ``majorities-ring`` (every node sees a majority, no two the same one),
``minority-third`` (isolate a third, rounded down, of the nodes), ``bridge``
(two halves joined only through one node), ``one-way`` (asymmetric: a random
node's messages to the others are lost, theirs reach it), ``random`` (a random
cut of the complete graph).

Each shape is built as the graph of links that *survive* and the grudge is its
complement within the complete graph (undirected shapes) or an explicit list of
directed cuts (one-way), so the connectivity claim of each shape is checkable
with networkx in tests. Every choice comes from the ``rng`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import networkx as nx

Grudge = dict[str, frozenset[str]]  # node -> nodes it does not hear from


def complete(nodes: Sequence[str]) -> nx.Graph:
    return nx.complete_graph(list(nodes))


def grudge_from_surviving(nodes: Sequence[str], surviving: nx.Graph) -> Grudge:
    """Every link of the complete graph that is not in ``surviving`` is cut, both ways."""
    cut = nx.difference(complete(nodes), surviving)
    return {n: frozenset(cut.neighbors(n)) for n in nodes if cut.degree(n)}


def isolate(nodes: Sequence[str], isolated: Sequence[str]) -> Grudge:
    """``isolated`` and the rest cannot talk across (within each side they can)."""
    side = set(isolated)
    surviving = nx.Graph()
    surviving.add_nodes_from(nodes)
    surviving.add_edges_from((a, b) for a in nodes for b in nodes if a < b and (a in side) == (b in side))
    return grudge_from_surviving(nodes, surviving)


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Nodes on a shuffled ring, each linked to its nearest neighbours so it sees a bare majority."""
    order = list(nodes)
    rng.shuffle(order)
    count = len(order)
    needed = count // 2  # others a node must hear to be in a majority with itself
    reach = max(1, -(-needed // 2))  # neighbours on each side of the ring
    surviving = nx.Graph()
    surviving.add_nodes_from(order)
    for i, node in enumerate(order):
        for step in range(1, reach + 1):
            surviving.add_edge(node, order[(i + step) % count])
    return grudge_from_surviving(nodes, surviving)


def bridge(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Two halves that share exactly one node (the bridge), which hears both."""
    order = list(nodes)
    rng.shuffle(order)
    middle = len(order) // 2
    left, bridge_node, right = order[:middle], order[middle], order[middle + 1 :]
    surviving = nx.Graph()
    surviving.add_nodes_from(order)
    for side in (left, right):
        members = [*side, bridge_node]
        surviving.add_edges_from((a, b) for a in members for b in members if a < b)
    return grudge_from_surviving(nodes, surviving)


def one_way(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """One random node is not heard by the others; it still hears them."""
    speaker = rng.choice(list(nodes))
    return {n: frozenset([speaker]) for n in nodes if n != speaker}


def compute(
    kind: str, nodes: Sequence[str], *, rng: random.Random, primary: str | None
) -> tuple[Grudge, list[str]]:
    """The grudge of shape ``kind`` and its targets (the nodes the shape singles out).

    ``primary`` is used by the ``primary`` shape (a random node if unknown).
    """
    nodes = sorted(nodes)
    order = list(nodes)
    rng.shuffle(order)
    if kind == "one":
        side = order[:1]
    elif kind == "primary":
        side = [primary if primary in nodes else order[0]]
    elif kind == "majority":
        side = order[: max(1, (len(order) - 1) // 2)]
    elif kind == "minority-third":
        side = order[: max(1, len(order) // 3)]
    elif kind == "random":
        side = order[: rng.randint(1, len(order) - 1)]
    elif kind == "majorities-ring":
        return majorities_ring(nodes, rng), list(nodes)
    elif kind == "bridge":
        grudge = bridge(nodes, rng)
        return grudge, [n for n in nodes if n not in grudge]
    elif kind == "one-way":
        grudge = one_way(nodes, rng)
        return grudge, [n for n in nodes if n not in grudge]
    else:
        raise ValueError(f"unknown grudge kind {kind!r}")
    return isolate(nodes, side), sorted(side)


def hears(grudge: Grudge, nodes: Sequence[str]) -> nx.DiGraph:
    """Directed graph of who hears whom (edge a -> b: b receives what a sends) under ``grudge``."""
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(
        (a, b) for a in nodes for b in nodes if a != b and a not in grudge.get(b, frozenset())
    )
    return graph


def to_json(grudge: Grudge) -> dict[str, list[str]]:
    return {node: sorted(srcs) for node, srcs in sorted(grudge.items())}
