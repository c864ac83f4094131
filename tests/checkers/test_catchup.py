"""Catch-up: a healthy, idle cluster whose replicas stand at different ops after the final heal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import harness.convergence as convergence_module
from checkers.catchup import check_catchup
from harness.convergence import ConvergenceMonitor


def final(commits: dict[str, int | str], **fields: Any) -> dict[str, Any]:
    nodes = {n: {"commit_min": c} if isinstance(c, int) else c for n, c in commits.items()}
    return {"snapshots": [{"label": "after the final heal", "nodes": nodes, "settle_s": 10.0, **fields}]}


def test_a_lag_in_a_healthy_cluster_is_a_finding_naming_who_stayed_where() -> None:
    entry = check_catchup(final({"n1": 926, "n2": 826, "n3": 895}, settled=False, healthy=True))
    assert entry is not None and entry["valid"] is False
    assert entry["summary"].startswith("n2 stayed at op 826 and n3 at op 895 while n1 executed op 926, 10 s")
    assert entry["commit_mins"] == {"n1": 926, "n2": 826, "n3": 895}


def test_settled_is_valid_and_what_cannot_be_judged_gets_no_entry() -> None:
    settled = check_catchup(final({"n1": 5, "n2": 5, "n3": "not running"}, settled=True))
    assert settled == {"valid": True, "summary": "every replica executed op 5 after the final heal"}
    assert check_catchup(final({"n1": 5, "n2": 4}, settled=False, healthy=False)) is None  # not healthy
    assert check_catchup(final({"n1": 5, "n2": 4})) is None  # stopped before it could settle
    older = {"snapshots": [{"label": "after the final heal", "nodes": {"n1": {"commit_min": 1}}}]}
    assert check_catchup(older) is None  # written before the settle record existed
    assert check_catchup({"snapshots": [{"label": "after healing kill", "nodes": {}}]}) is None


class StuckSource:
    """Two nodes whose executed ops never meet, as a replica that cannot execute a committed op reports."""

    def convergence(self, query: dict[str, Any]) -> dict[str, dict[str, Any] | str]:
        return {"n1": {"commit_min": 12}, "n2": {"commit_min": 9}, "n3": "not running"}

    def wait_healthy(self, *, timeout_s: float) -> bool:
        return True


def test_the_monitor_records_that_the_replicas_did_not_settle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convergence_module, "FINAL_SETTLE_S", 0.3)
    monitor = ConvergenceMonitor(StuckSource(), run_dir=tmp_path, active_faults=dict, phase=lambda: "final")
    monitor.final(lambda: False)
    data = json.loads((tmp_path / "convergence.json").read_text())
    last = data["snapshots"][-1]
    assert (last["settle_s"], last["settled"], last["healthy"]) == (0.3, False, True)
    assert check_catchup(data)["valid"] is False  # type: ignore[index]
