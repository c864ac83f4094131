"""Quorum sizes (vr/quorums.py, docs/vr.md §1.8) and the simulator at 7 and 9 replicas.

The table is TigerBeetle's flexible quorums: replication capped at 3, view change
``replicas - replication + 1``. The simulation part runs the real replica under the
generic swarm (crashes, partitions, loss, disk faults) at the cluster sizes above 5 that
``ratchet run --nodes`` accepts, so a 7- or 9-node run is not the first place they meet.
"""

from __future__ import annotations

import pytest

from vr.quorums import REPLICA_COUNT_MAX, quorums
from vr.testing.sim import main, run_seed

# replicas -> (replication, view change, nack): the table in docs/vr.md §1.8.
TABLE = {
    1: (1, 1, 1),
    2: (2, 2, 1),
    3: (2, 2, 2),
    4: (2, 3, 3),
    5: (3, 3, 3),
    6: (3, 4, 4),
    7: (3, 5, 5),
    8: (3, 6, 6),
    9: (3, 7, 7),
}
SEEDS_DEFAULT = {7: 4, 9: 3}  # ~0.5 s a seed at 7 replicas, ~0.7 s at 9 (idle machine)
SEEDS_SOAK = {7: 200, 9: 100}


@pytest.mark.parametrize("replicas", sorted(TABLE))
def test_table(replicas: int) -> None:
    q = quorums(replicas)
    assert (q.replication, q.view_change, q.nack) == TABLE[replicas]


@pytest.mark.parametrize("replicas", range(1, REPLICA_COUNT_MAX + 1))
def test_every_replication_quorum_meets_every_view_change_quorum(replicas: int) -> None:
    q = quorums(replicas)
    assert q.replication + q.view_change > replicas  # a view change sees every committed op
    assert q.nack + q.replication == replicas + 1  # nack answers leave no room for a quorum
    assert q.view_change >= replicas // 2 + 1  # two view changes never both succeed apart
    assert q.replication <= 3
    assert q.view_change <= replicas


@pytest.mark.parametrize("replicas", [0, -1, REPLICA_COUNT_MAX + 1])
def test_sizes_outside_the_range_are_refused(replicas: int) -> None:
    with pytest.raises(ValueError, match=f"supported cluster sizes are 1 to {REPLICA_COUNT_MAX}"):
        quorums(replicas)


def _run(replicas: int, count: int) -> None:
    failures, crashes, commits = [], 0, 0
    for seed in range(1, count + 1):
        result = run_seed(seed, replica_count=replicas)
        assert result.config is not None and result.config.replica_count == replicas
        crashes += result.stats.get("crashes", 0)
        commits += result.stats.get("commits", 0)
        if not result.ok:
            failures.append(f"{result.outcome}: {result.detail}\n  reproduce: {result.reproduce()}")
    assert not failures, "\n".join(failures)
    assert commits > 0
    assert crashes > 0  # the seeds crashed replicas, so views changed under the bigger quorum


@pytest.mark.parametrize("replicas", sorted(SEEDS_DEFAULT))
def test_simulation_at_big_cluster_sizes(replicas: int) -> None:
    _run(replicas, SEEDS_DEFAULT[replicas])


@pytest.mark.soak
@pytest.mark.parametrize("replicas", sorted(SEEDS_SOAK))
def test_simulation_at_big_cluster_sizes_soak(replicas: int) -> None:
    _run(replicas, SEEDS_SOAK[replicas])


def test_the_reproduce_line_carries_the_replica_count(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_seed(2, replica_count=7)
    assert result.reproduce() == "python -m vr.testing.sim --seed 2 --replicas 7"
    assert main(["--seed", "2", "--replicas", "7"]) == 0
    assert capsys.readouterr().out.startswith("seed=2 outcome=ok")
    with pytest.raises(SystemExit):
        main(["--seed", "2", "--replicas", str(REPLICA_COUNT_MAX + 1)])
    assert "the cluster size must be 1 to 15" in capsys.readouterr().err
