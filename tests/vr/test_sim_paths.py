"""The cheap protocol paths are the ones taken: the simulator's checks alone cannot tell.

A replica that answered start-views with a state sync (the whole checkpoint) instead of
installing the new view's log could stay safe and live, and then no safety or liveness
check would fail for it; this scenario pins down that, when the log fits in the ring, a
view change installs the log from the start-view and nobody transfers state.
"""

from __future__ import annotations

import pytest

from tests.vr.test_replica_scenarios import done, normal_primary, quiet_cluster, run_until
from vr.replica import Status
from vr.testing.cluster import SIM_LAYOUT, FaultOptions, SimCluster
from vr.testing.network import NetworkOptions
from vr.testing.storage import wal_sectors

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


@pytest.mark.parametrize(
    "commits_min", [4, 2 * SIM_LAYOUT.slot_count + 4], ids=["before-the-ring-wraps", "two-wraps-on"]
)
def test_a_faulty_slot_just_above_the_head_makes_the_head_uncertain(commits_min: int) -> None:
    """Whatever lap of the WAL ring the head is on, a torn slot just above it may hide a newer op.

    tests/vr/test_replica_scenarios.py checks this with the ring wrapped once, where
    ``op - slot_count`` and ``op % slot_count`` agree; here the head is on the first lap and on
    the third, so a slot computed any other way than ``op % slot_count`` is noticed.
    """
    cluster = quiet_cluster(requests=commits_min + 40)
    run_until(
        cluster,
        lambda: (p := normal_primary(cluster)) is not None and p.commit_min > commits_min,
        ticks_max=8000,
        what=f"more than {commits_min} commits",
    )
    primary = normal_primary(cluster)
    assert primary is not None
    backup = (primary.replica + 1) % cluster.replica_count
    victim = cluster.replicas[backup]
    assert victim is not None
    cluster.crash(backup, power_loss=False)
    sectors = wal_sectors(SIM_LAYOUT, victim.op + 1)
    cluster.storages[backup].corrupt(sectors.prepare_offset, 64)
    cluster.storages[backup].corrupt(sectors.header_offset, sectors.header_size)
    cluster.restart(backup)
    restarted = cluster.replicas[backup]
    assert restarted is not None
    assert restarted.status_name == Status.RECOVERING_HEAD
    run_until(cluster, lambda: done(cluster) and cluster.converged(), ticks_max=4000, what="converged")
    assert restarted.status_name == Status.NORMAL
