"""`ratchet campaign` and `ratchet selftest` against real local VR clusters (bounded: short runs).

Claims: a campaign runs its matrix (two runs side by side with --jobs 2), writes campaign.json and
JUnit with one case per run, and exits with the worst outcome; a time budget starts no new run once
spent and lists what it skipped; SIGINT stops the campaign cleanly (the running run heals and records
the interruption, the rest is listed as not run, exit 2, nothing left behind); selftest finds a planted
bug and raises no false alarm on the correct cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.harness.test_vr_runs import assert_nothing_left

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="checks the host's ruleset (nft list tables), which needs root"
    ),
]


def campaign_file(tmp_path: Path, *, time_limit_s: int, seeds: int) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(
        f'name = "tiny"\nseeds = {seeds}\n[defaults]\ntime_limit = {time_limit_s}\nnemesis_interval = 2\n'
        '[[run]]\nscenario = "kill"\n'
    )
    return path


def ratchet(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def only_campaign_dir(store: Path, name: str) -> Path:
    (directory,) = (store / "campaigns" / name).iterdir()
    return directory


def test_a_campaign_runs_its_matrix_side_by_side_and_writes_json_and_junit(tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = ratchet(
        "campaign",
        str(campaign_file(tmp_path, time_limit_s=6, seeds=2)),
        "--jobs",
        "2",
        "--store",
        str(store),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    directory = only_campaign_dir(store, "tiny")
    document = json.loads((directory / "campaign.json").read_text())
    assert [(r["seed"], r["verdict"], r["outcome"]) for r in document["runs"]] == [
        (1, "valid", "pass"),
        (2, "valid", "pass"),
    ]
    for record in document["runs"]:
        run = directory / record["run_dir"]
        assert json.loads((run / "results.json").read_text())["valid"] is True
        assert json.loads((run / "test.json").read_text())["seed"] == record["seed"]
        assert record["ok"] > 0 and record["ops"] == record["ok"] + record["fail"] + record["info"]
        assert isinstance(record["coverage_missing"], list)  # read from results.json coverage
        assert record["reproduce"] == f"ratchet run --replay {run.resolve()}"
        assert_nothing_left(run)
    suite = ET.parse(directory / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "0"
    assert "kill-" in proc.stderr and "2 passed, 0 failed" in proc.stderr  # a line per run, then the total


def test_a_time_budget_and_sigint_stop_a_campaign_cleanly(tmp_path: Path) -> None:
    store = tmp_path / "budget"
    proc = ratchet(
        "campaign",
        str(campaign_file(tmp_path, time_limit_s=4, seeds=2)),
        "--time-budget",
        "1",
        "--store",
        str(store),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads((only_campaign_dir(store, "tiny") / "campaign.json").read_text())["runs"]
    assert [r["outcome"] for r in runs] == ["pass", "skipped"]
    assert runs[1]["reason"] == "time budget spent"

    store = tmp_path / "sigint"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "campaign",
            str(campaign_file(tmp_path, time_limit_s=30, seeds=2)),
            "--store",
            str(store),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(store.glob("campaigns/tiny/*/runs/*/*/*/history.jsonl")):
        time.sleep(0.2)
    time.sleep(3)  # the first run is under way: clients and faults
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=180)
    assert child.returncode == 2, err[-3000:]
    directory = only_campaign_dir(store, "tiny")
    document = json.loads((directory / "campaign.json").read_text())
    assert document["interrupted"] is True
    first, second = document["runs"]
    assert first["verdict"] == "unknown" and "interrupt" in first["reason"]
    assert second["verdict"] == "not-run" and second["reason"] == "interrupted"
    run = directory / first["run_dir"]
    teardown = json.loads((run / "results.json").read_text())["teardown"]
    assert any("stopped" in line for line in teardown)
    assert_nothing_left(run)


def test_selftest_finds_a_planted_bug_and_no_false_alarm(tmp_path: Path) -> None:
    proc = ratchet(
        "selftest", "--seeds", "1", "--bug", "no-client-table", "--jobs", "2", "--store", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found     no-client-table by append-kill: 1 of 1 seeds" in proc.stderr
    assert "no alarm  correct cluster on append-kill: 1 of 1 valid" in proc.stderr
