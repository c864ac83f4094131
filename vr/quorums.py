"""Quorum sizes per cluster size (docs/vr.md §1.8): replication, view change, and nack.

Flexible quorums, TigerBeetle's way: the replication quorum is a majority capped at 3 (a
commit waits for 3 durable copies however big the cluster is), and the view-change quorum
grows to make up for it: ``replica_count - replication + 1``, never less than a majority.
So any replication quorum intersects any view-change quorum (replication + view_change >
replica_count) and a committed op is seen by every view change; the price of a big cluster
is a big view-change quorum (7 replicas commit with 3 but need 5 to elect a primary).

The nack quorum is the number of "never had it" answers that rules out a replication
quorum for an op: ``replica_count - replication + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLICATION_MAX = 3  # copies a commit waits for, whatever the cluster size
# vr/node.py accepts up to 15 peers (replica indexes stay far below the client marker 255);
# every size it accepts has quorums here. Sizes 1 to 9 are simulated in tests/vr/test_quorums.py.
REPLICA_COUNT_MAX = 15


@dataclass(frozen=True, slots=True)
class Quorums:
    replica_count: int
    replication: int
    view_change: int
    nack: int


def quorums(replica_count: int) -> Quorums:
    """The three quorums for ``replica_count`` replicas; ValueError outside 1..REPLICA_COUNT_MAX."""
    if not 1 <= replica_count <= REPLICA_COUNT_MAX:
        raise ValueError(
            f"replica_count={replica_count}: supported cluster sizes are 1 to {REPLICA_COUNT_MAX}"
        )
    majority = replica_count // 2 + 1
    # Two replicas: a single copy is no quorum (either one alone could commit), so both.
    replication = 2 if replica_count == 2 else min(REPLICATION_MAX, (replica_count + 1) // 2)
    view_change = max(replica_count - replication + 1, majority)
    assert replication + view_change > replica_count
    nack = replica_count - replication + 1
    return Quorums(replica_count, replication, view_change, nack)
