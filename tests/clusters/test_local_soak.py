"""The local home at the cluster sizes the docker and ssh soaks run (``-m soak``): 5, 7 and 9
nodes under partition, kill and pause, valid with the correct VR. Above 5 replicas the
view-change quorum is larger than a majority (vr/quorums.py: 7 need 5), so these runs are
where a partition that leaves a bare majority shows whether the cluster still comes back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.soak

RATCHET = str(Path(sys.executable).with_name("ratchet"))


@pytest.mark.parametrize("nodes", [5, 7, 9])
def test_bigger_local_clusters_are_valid(tmp_path: Path, nodes: int) -> None:
    proc = subprocess.run(
        [RATCHET, "run", "default", "--nodes", str(nodes), "--nemesis", "partition,kill,pause",
         "--nemesis-interval", "2", "--time-limit", "20", "--seed", "5", "--store", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    run = (tmp_path / "latest").resolve()
    assert proc.returncode == 0, f"{run}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["teardown_errors"] == []
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    started = {
        op["f"] for op in history if op["process"] == "nemesis" and op["value"] and op["value"].get("targets")
    }
    # On a loaded machine fewer fault changes fit in 20 s: a partition and a process fault at least.
    assert "start-partition" in started and started & {"start-kill", "start-pause"}, started
