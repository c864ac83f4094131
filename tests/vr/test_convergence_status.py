"""What a replica tells the harness for the convergence check (contracts §3), on a simulated cluster.

Claims: after a clean run every replica reports the same state hashes and prefix
checksums at the same op; a probe armed ahead of the commit point is taken when that
op executes (and agrees across replicas although they reach it at different times);
the ``diverge-backup`` planted bug makes exactly one replica's state hash differ while
every prefix checksum still agrees (the same prepares, a different state); a status
request body that is not a well-formed query is refused, never obeyed.
"""

from __future__ import annotations

import pytest

from vr.node import _status_query
from vr.testing.cluster import FaultOptions, SimCluster
from vr.testing.network import NetworkOptions

QUIET_NETWORK = NetworkOptions(
    loss_probability=0.0,
    duplicate_probability=0.0,
    delay_min_ticks=1,
    delay_mean_ticks=2,
    partition_probability=0.0,
    heal_probability=0.0,
    partition_asymmetric_probability=0.0,
)
NO_FAULTS = FaultOptions(
    crash_probability=0.0,
    power_loss_probability=0.0,
    restart_after_ticks_max=20,
    corrupt_probability=0.0,
    flush_delay_ticks_max=0,
    clock_jump_probability=0.0,
    read_error_probability=0.0,
    power_cut_probability=0.0,
    misdirect_probability=0.0,
    superblock_corrupt_probability=0.0,
)


def run_cluster(
    *,
    bugs: frozenset[str] = frozenset(),
    requests: int = 40,
    probe_op: int | None = None,
    stop_early: bool = False,
) -> SimCluster:
    cluster = SimCluster(
        seed=11, replica_count=3, client_count=3, network=QUIET_NETWORK, faults=NO_FAULTS, bugs=bugs
    )
    cluster.requests_max = requests
    armed = False
    for _ in range(3000):
        cluster.step()
        if probe_op is not None and not armed:
            for replica in cluster.replicas:
                assert replica is not None
                replica.convergence(probe_op=probe_op)
            armed = True
        if stop_early and cluster.requests_issued >= requests // 2:
            return cluster  # still busy: clients keep issuing requests while the caller looks
        if cluster.requests_issued >= requests and cluster.pending_requests() == 0 and cluster.converged():
            return cluster
    pytest.fail("the quiet cluster did not finish its requests")


def test_replicas_of_a_clean_run_report_equal_hashes_and_a_probe_taken_at_the_armed_op() -> None:
    cluster = run_cluster(probe_op=5)
    reports = [r.convergence(keys=True) for r in cluster.replicas if r is not None]
    ops = {r["commit_min"] for r in reports}
    assert len(ops) == 1 and ops.pop() >= 5
    assert len({(r["state"]["kv"], r["state"]["clients"]) for r in reports}) == 1
    assert len({tuple(map(tuple, r["prefix"])) for r in reports}) == 1
    assert reports[0]["prefix"][-1] == [reports[0]["commit_min"], reports[0]["commit_checksum"]]
    probes = [r["probes"]["5"] for r in reports]
    assert all(p is not None and p["op"] == 5 and "kv" in p for p in probes)
    assert len({(p["kv"], p["clients"]) for p in probes}) == 1
    assert probes[0]["key_hashes"] == probes[1]["key_hashes"]
    # Without ``keys`` the (possibly large) per-key maps stay home.
    assert "key_hashes" not in cluster.replicas[0].convergence()["probes"]["5"]  # type: ignore[union-attr]
    # A probe armed for an op already passed says so rather than hashing a later state.
    late = cluster.replicas[0].convergence(probe_op=2)["probes"]["2"]  # type: ignore[union-attr]
    assert late == {"op": 2, "skipped": "already executed when the probe was armed"}


def test_diverge_backup_changes_one_replicas_state_but_no_prepare() -> None:
    cluster = run_cluster(bugs=frozenset({"diverge-backup"}))
    reports = [r.convergence() for r in cluster.replicas if r is not None]
    assert len({tuple(map(tuple, r["prefix"])) for r in reports}) == 1
    hashes = [r["state"]["kv"] for r in reports]
    assert sorted(hashes.count(h) for h in set(hashes)) == [1, 2]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", {}),
        (b"{}", {}),
        (b'{"convergence": {}}', {"convergence": {"probe_op": None, "keys": False, "values": []}}),
        (
            b'{"convergence": {"probe_op": 7, "keys": true, "values": ["a"]}}',
            {"convergence": {"probe_op": 7, "keys": True, "values": ["a"]}},
        ),
    ],
)
def test_status_queries_that_parse(body: bytes, expected: dict[str, object]) -> None:
    assert _status_query(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",
        b"[1]",
        b'{"other": 1}',
        b'{"convergence": {"probe_op": -1}}',
        b'{"convergence": {"probe_op": true}}',
        b'{"convergence": {"probe_op": 1.5}}',
        b'{"convergence": {"keys": 1}}',
        b'{"convergence": {"values": "a"}}',
        b'{"convergence": {"values": [1]}}',
        b'{"convergence": {"values": ["k"' + b', "k"' * 40 + b"]}}",
        b'{"convergence": {"surprise": 1}}',
    ],
)
def test_status_queries_that_are_refused(body: bytes) -> None:
    assert _status_query(body) is None
