"""The convergence collector against replicas of the simulator (real Replica objects, no network).

A source answers queries the way a node does (``Replica.convergence``), so the monitor's
arming of a probe ahead of the fastest replica, its wait for the probe, its wait for a
common op at the end, and its second round for per-key hashes and values are exercised
on real state machines; ``convergence.json`` must then judge as the checker says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checkers.convergence import check_convergence
from harness.convergence import ConvergenceMonitor
from tests.vr.test_convergence_status import run_cluster
from vr.testing.cluster import SimCluster


class SimSource:
    """Each query first lets the simulated cluster run a few steps, as time passes for real nodes."""

    def __init__(self, cluster: SimCluster, *, steps_per_query: int = 3) -> None:
        self.cluster = cluster
        self.steps = steps_per_query
        self.queries: list[dict[str, Any]] = []

    def convergence(self, query: dict[str, Any]) -> dict[str, dict[str, Any] | str]:
        self.queries.append(query)
        for _ in range(self.steps):
            self.cluster.step()
        return {
            f"n{i + 1}": replica.convergence(**query) if replica is not None else "not running"
            for i, replica in enumerate(self.cluster.replicas)
        }

    def wait_healthy(self, *, timeout_s: float) -> bool:
        return True  # the simulated cluster has no faults here


def monitor_for(cluster: SimCluster, tmp_path: Path) -> tuple[ConvergenceMonitor, SimSource]:
    source = SimSource(cluster)
    monitor = ConvergenceMonitor(source, run_dir=tmp_path, active_faults=dict, phase=lambda: "main")
    return monitor, source


def test_a_quiet_point_arms_a_probe_ahead_and_the_final_snapshot_compares_at_one_op(tmp_path: Path) -> None:
    cluster = run_cluster(requests=200, stop_early=True)
    monitor, source = monitor_for(cluster, tmp_path)
    monitor.quiet_point("after healing partition")
    armed = [q["probe_op"] for q in source.queries if q.get("probe_op") is not None]
    assert len(armed) == 1
    monitor.final(lambda: False)
    data = json.loads((tmp_path / "convergence.json").read_text())
    labels = [s["label"] for s in data["snapshots"]]
    assert labels == ["after healing partition", "after the final heal"]
    probe = data["snapshots"][0]
    assert probe["probe_op"] == armed[0]
    result = check_convergence(data)
    assert result["valid"] is True, result
    assert data["snapshots"][-1]["settled"] is True  # every replica got to the same op
    assert armed[0] in result["snapshots"][0]["state_ops"]  # every replica took the probe
    assert result["snapshots"][-1]["state_ops"]


def test_a_diverged_replica_gets_a_second_round_with_keys_and_values(tmp_path: Path) -> None:
    cluster = run_cluster(bugs=frozenset({"diverge-backup"}))
    monitor, source = monitor_for(cluster, tmp_path)
    monitor.final(lambda: False)
    assert any(q.get("keys") for q in source.queries)
    assert any(q.get("values") for q in source.queries)
    result = check_convergence(json.loads((tmp_path / "convergence.json").read_text()))
    assert result["valid"] is False
    (finding,) = result["findings"]
    assert len(finding["diverged"]) == 1 and finding["keys_total"] >= 1
    assert all("values" in entry for entry in finding["keys"])
