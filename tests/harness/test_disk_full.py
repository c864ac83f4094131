"""A disk that fills mid-run: a real tmpfs store, filled while a real VR run is in its main phase.

Claims: the run ends with exit 2 and the reason "no space left", no traceback;
every fault is healed and the heal is recorded (results.json teardown and the
history); the history ends at its last whole line and every line parses;
results.json and the report say why; a later ``ratchet report`` keeps it unknown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checkers.history import read_history
from harness.cli import main

HERE = Path(__file__).resolve().parent

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs in a private mount namespace: needs root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) (util-linux)"),
]

# Three VR data files are 96 MiB each (preallocated at format); 320 MiB leaves room for the run to
# start and a filler file takes the rest once clients are running.
TMPFS_SIZE = "320M"


def test_a_disk_that_fills_mid_run_ends_unknown_healed_with_a_whole_history(tmp_path: Path) -> None:
    out = tmp_path / "out"
    subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(HERE / "disk_full.py"),
            str(tmp_path / "mnt"),
            TMPFS_SIZE,
            str(out),
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "20",
            "--seed",
            "5",
        ],
        check=True,
        timeout=240,
        cwd=HERE.parents[1],
    )
    outcome = json.loads((out / "outcome.json").read_text())
    assert outcome["filled_bytes"], "the disk was never filled during the run"
    assert outcome["rc"] == 2, outcome["stderr"][-3000:]
    assert "Traceback" not in outcome["stderr"]
    assert "no space left" in outcome["stderr"]
    run = out / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] == "unknown" and results["completed"] is False
    assert results["reason"].startswith("no space left on the store's disk")
    assert results["teardown_errors"] == []
    assert any(line.startswith("stopped n") for line in results["teardown"])
    raw = (run / "history.jsonl").read_bytes()
    assert raw.endswith(b"\n")  # up to the last whole line
    ops = read_history(run / "history.jsonl")
    assert sum(1 for op in ops if op.type == "ok") > 40
    last_by_kind: dict[str, str] = {}
    for op in ops:
        if op.process == "nemesis" and op.type == "info":
            last_by_kind[op.f.split("-", 1)[1]] = op.f
    assert last_by_kind and all(f.startswith("stop-") for f in last_by_kind.values()), last_by_kind
    healed = [line for line in results["teardown"] if line.startswith("healed")]
    teardown_heals = [op for op in ops if isinstance(op.value, dict) and op.value.get("teardown")]
    assert len(teardown_heals) == 2 * len(healed)  # every heal at teardown is in the history too
    summary = json.loads((run / "report.json").read_text())
    assert summary["verdict"] == "unknown" and summary["reason"].startswith("no space left")
    assert main(["report", str(run)]) == 2  # re-checking keeps it unknown
    assert json.loads((run / "results.json").read_text())["reason"] == results["reason"]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=True)
    assert "ratchet" not in tables.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert outcome["run"] not in ps, "a node process of the run is still running"
