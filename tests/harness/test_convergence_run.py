"""A diverged replica is found by comparing the replicas in a real ``ratchet run``.

The ``diverge-backup`` planted bug makes one backup (the highest-numbered) apply every
committed write with a different value. Clients read from the primary only, so the
register history stays linearizable; only the convergence checker, which asks every
node for its executed prefix and its state hash at a common op, can see it. The same
seed with the correct replica must pass, so the finding is the bug's doing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="ratchet run creates network namespaces, which needs root"),
]

ARGS = ["no-faults", "--time-limit", "4", "--seed", "7", "--no-progress"]


def ratchet(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


def test_a_diverged_backup_is_found_and_named_and_the_correct_build_passes(tmp_path: Path) -> None:
    done = ratchet(tmp_path / "buggy", *ARGS, "--bug", "diverge-backup")
    assert done.returncode == 1, done.stdout + done.stderr
    run = (tmp_path / "buggy" / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is False
    assert results["checkers"]["linearizable"]["valid"] is True  # the clients saw nothing wrong
    convergence = results["checkers"]["convergence"]
    assert convergence["valid"] is False
    finding = convergence["findings"][0]
    assert finding["kind"] == "state" and len(finding["diverged"]) == 1 and len(finding["agree"]) == 2
    odd = finding["diverged"][0]
    assert finding["keys_total"] >= 1
    first = finding["keys"][0]
    assert len({first["values"][n] for n in finding["agree"]}) == 1
    assert first["values"][odd] != first["values"][finding["agree"][0]]
    assert f"{odd} diverged from {', '.join(finding['agree'])} at op" in done.stderr + done.stdout
    report = (run / "report.html").read_text()
    assert "convergence" in report

    clean = ratchet(tmp_path / "clean", *ARGS)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    results = json.loads(((tmp_path / "clean" / "latest").resolve() / "results.json").read_text())
    assert results["checkers"]["convergence"]["valid"] is True
    assert results["checkers"]["convergence"]["snapshots"][-1]["state_ops"]
