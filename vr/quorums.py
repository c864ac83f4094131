"""Quorum sizes per cluster size (docs/vr.md §1.8): replication, view change, and nack.

Any replication quorum intersects any view-change quorum (replication + view_change >
replica_count), so a committed op is seen by every view change. The nack quorum is the
number of "never had it" answers that rules out a replication quorum for an op:
``replica_count - replication + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

# replica_count -> (replication, view_change); replication capped at 3 (flexible quorums).
_TABLE = {1: (1, 1), 2: (2, 2), 3: (2, 2), 4: (2, 3), 5: (3, 3), 6: (3, 4)}


@dataclass(frozen=True, slots=True)
class Quorums:
    replica_count: int
    replication: int
    view_change: int
    nack: int


def quorums(replica_count: int) -> Quorums:
    if replica_count not in _TABLE:
        raise ValueError(f"replica_count={replica_count}: supported cluster sizes are 1 to 6")
    replication, view_change = _TABLE[replica_count]
    assert replication + view_change > replica_count
    nack = replica_count - replication + 1
    return Quorums(replica_count, replication, view_change, nack)
