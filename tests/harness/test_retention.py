"""`ratchet gc`: node data goes, everything a report or a replay needs stays."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import BadInput
from harness.retention import parse_age_s, plan, should_delete_data

KEPT = (
    "test.json",
    "history.jsonl",
    "results.json",
    "report.html",
    "nodes/n1/node.log",
    "nodes/n1/events.jsonl",
)


def make_run(store: Path, rel: str, *, age_s: float, data_bytes: int = 8192) -> Path:
    run = store / rel
    for name in KEPT:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("{}")
    for node in ("n1", "n2"):
        data = run / "nodes" / node / "data"
        data.mkdir(parents=True)
        (data / "replica.vr").write_bytes(b"\1" * data_bytes)
    stamp = time.time() - age_s
    os.utime(run / "test.json", (stamp, stamp))
    return run


def gc(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "gc", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_gc_keeps_the_newest_runs_data_and_every_runs_files(tmp_path: Path) -> None:
    old = make_run(tmp_path, "kill/20260101T000000", age_s=10 * 86_400)
    mid = make_run(tmp_path, "pause/20261201T000000", age_s=3 * 86_400)
    new = make_run(tmp_path, "campaigns/nightly/20261204T000000/runs/kill-s1/kill/20261204T000001", age_s=60)
    dry = gc(tmp_path, "--keep", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 run(s)" in dry.stdout and (old / "nodes/n1/data").exists()
    proc = gc(tmp_path, "--keep", "1")
    assert proc.returncode == 0, proc.stderr
    assert not (old / "nodes/n1/data").exists() and not (mid / "nodes/n2/data").exists()
    assert (new / "nodes/n1/data/replica.vr").exists()  # inside a campaign: found and kept as the newest
    for run in (old, mid, new):
        for name in KEPT:
            assert (run / name).is_file(), (run, name)
    proc = gc(tmp_path, "--older-than", "30s")
    assert proc.returncode == 0 and not (new / "nodes/n1/data").exists()


def test_plan_by_age_and_count(tmp_path: Path) -> None:
    runs = [make_run(tmp_path, f"s/{i}", age_s=i * 3600) for i in range(5)]
    doomed = {r.run for r in plan(tmp_path, keep=None, older_than_s=2.5 * 3600)}
    assert doomed == {runs[3], runs[4]}
    doomed = {r.run for r in plan(tmp_path, keep=4, older_than_s=None)}
    assert doomed == {runs[4]}
    doomed = {r.run for r in plan(tmp_path, keep=1, older_than_s=3.5 * 3600)}
    assert doomed == set(runs[1:])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43_200), ("7d", 604_800), ("2w", 1_209_600), ("1.5h", 5400)],
)
def test_ages(text: str, seconds: float) -> None:
    assert parse_age_s(text) == seconds


@pytest.mark.parametrize("text", ["7", "d", "-1d", "7y", "", "1e3s"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(BadInput):
        parse_age_s(text)


def test_gc_refuses_without_a_rule_or_with_a_bad_store(tmp_path: Path) -> None:
    for args in ([], ["--keep", "-1"], ["--older-than", "soon"]):
        proc = gc(tmp_path, *args)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    proc = gc(tmp_path / "nope", "--keep", "1")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr


def test_keep_data_policy() -> None:
    assert should_delete_data("on-failure", True) and not should_delete_data("on-failure", False)
    assert not should_delete_data("on-failure", "unknown")
    assert not should_delete_data("always", True) and should_delete_data("never", False)


@pytest.mark.integration
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a real run in private namespaces")
def test_keep_data_always_keeps_a_valid_runs_node_data(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "no-faults",
            "--time-limit",
            "3",
            "--seed",
            "1",
            "--keep-data",
            "always",
            "--store",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = (tmp_path / "latest").resolve()
    assert sorted(p.parent.name for p in run.glob("nodes/*/data")) == ["n1", "n2", "n3"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "no-faults",
            "--time-limit",
            "3",
            "--keep-data",
            "sometimes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3 and "keep_data" in proc.stderr and "Traceback" not in proc.stderr
