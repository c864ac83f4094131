"""The cheap protocol paths are the ones taken: the simulator's checks alone cannot tell.

A replica that answered start-views with a state sync (the whole checkpoint) instead of
installing the new view's log could stay safe and live, and then no safety or liveness
check would fail for it; this scenario pins down that, when the log fits in the ring, a
view change installs the log from the start-view and nobody transfers state.
"""

from __future__ import annotations

from vr.testing.cluster import FaultOptions, SimCluster
from vr.testing.network import NetworkOptions

TICKS_MAX = 3000


def _run_until(cluster: SimCluster, done: object, ticks_max: int = TICKS_MAX) -> None:
    deadline = cluster.now + ticks_max
    while cluster.now < deadline:
        cluster.step()
        if done():  # type: ignore[operator]
            return
    raise AssertionError(
        f"not reached in {ticks_max} ticks: {[(r.view, r.status_name, r.commit_min) for r in cluster.replicas if r]}"
    )


def test_a_view_change_within_the_ring_installs_the_start_view_without_state_transfer() -> None:
    cluster = SimCluster(
        seed=3,
        replica_count=3,
        client_count=2,
        network=NetworkOptions(),
        faults=FaultOptions(crash_probability=0.0),
    )
    cluster.requests_max = 8
    _run_until(cluster, lambda: cluster.checker.executed_upto >= 4)
    primary = next(i for i, r in enumerate(cluster.replicas) if r is not None and r.view % 3 == i)
    cluster.network.partition({primary})  # the others elect a new primary; the old one falls behind
    _run_until(
        cluster,
        lambda: all(r is not None and r.view > 0 for i, r in enumerate(cluster.replicas) if i != primary),
    )
    cluster.requests_max = 16  # the new view commits more while the old primary is cut off
    _run_until(cluster, lambda: cluster.requests_issued >= 16 and cluster.pending_requests() == 0)
    cluster.network.heal()
    _run_until(cluster, cluster.converged)
    replicas = [r for r in cluster.replicas if r is not None]
    assert len({r.view for r in replicas}) == 1 and replicas[0].view > 0
    assert all(r.counters["dropped"].get("sv-beyond-checkpoint", 0) == 0 for r in replicas)
    assert sum(r.counters["state_transfers"] for r in replicas) == 0
    assert not [event for event in cluster.events if event[2] == "state_transfer"]
