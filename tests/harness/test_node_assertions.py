"""A replica that fails its own assertion is a finding: read from the node's log, judged, reported.

The replica's assertions are the checker of last resort (TigerBeetle's stance),
so a run in which one fired must not be "valid" however linearizable the
history looks. The trip hook (``tests/harness/trip/sitecustomize.py``) makes one
real node fail the real first assertion of ``Replica._execute``; a SIGKILL (the
kill nemesis) and a SIGTERM (a clean stop) must leave nothing to report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from checkers.assertions import check_assertions
from checkers.check import check_run
from checkers.history import HistoryWriter, Op
from harness.session import record_assertions
from harness.store import RunDir
from systems.vr.crashes import node_assertions, read_log
from tests.vr.test_integration_cluster import LocalCluster, wait_for_primary, wait_until
from vr.client import Client, RequestIndeterminate

TRIP = Path(__file__).resolve().parent / "trip"
ROOT = Path(__file__).resolve().parents[2]
RUN_FLAGS = ("--time-limit", "4", "--nemesis-interval", "1", "--seed", "3", "--no-progress")


def trip_env(replica: int, op: int) -> dict[str, str]:
    path = os.pathsep.join([str(TRIP), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "RATCHET_TEST_TRIP": f"{replica}:{op}"}


@pytest.fixture
def tripping_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    for name, value in trip_env(1, 3).items():
        monkeypatch.setenv(name, value)  # inherited by the node processes
    local = LocalCluster(tmp_path)
    try:
        yield local
    finally:
        local.cleanup()
        for data_file in tmp_path.glob("node*/replica.vr"):
            data_file.unlink()


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_real_assertion_is_read_back_and_kills_and_stops_are_not(tripping_cluster: LocalCluster) -> None:
    cluster = tripping_cluster
    for replica in range(3):
        cluster.start(replica, format_data=True)
    client = Client(cluster.peers, cluster=11, timeout_s=1.0, seed=5)
    try:
        wait_for_primary(client, [0, 1, 2], what="a first primary")
        for key in range(8):
            try:
                client.write(f"k{key}", key)
            except RequestIndeterminate:
                break  # replica 1 may be the primary: its assertion ends the writes
    finally:
        client.close()
    tripped = cluster.processes[1]
    wait_until(lambda: tripped.poll() is not None, timeout_s=15, what="replica 1 to trip its assertion")
    assert tripped.returncode == 1
    cluster.processes.pop(1)
    cluster.kill(2)  # SIGKILL, as the kill nemesis does
    assert cluster.terminate_all() == {0: 0}  # SIGTERM: a clean stop

    failures = node_assertions("n2", cluster.root / "node1")
    assert len(failures) == 1
    failure = failures[0]
    assert failure.replica == 1
    assert (
        failure.where.startswith("vr/replica.py:") and " in _execute: assert header.op == " in failure.where
    )
    op, commit_min = json.loads(failure.message.replace("(", "[").replace(")", "]"))
    assert op == commit_min >= 3  # the op it was about to execute is one it believed it had
    assert failure.mono_ns is not None and failure.wall_ns is not None
    for killed_or_stopped in (0, 2):
        assert node_assertions(f"n{killed_or_stopped + 1}", cluster.root / f"node{killed_or_stopped}") == []


def test_only_assertion_crashes_count(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_text(
        "ts=2026-12-05 03:31:49,000 level=INFO node=started replica=0\n"
        "ts=2026-12-05 03:31:49,905 level=ERROR node=crashed replica=0\n"
        "Traceback (most recent call last):\n"
        '  File "/x/vr/storage.py", line 9, in fsync\n'
        "    os.fsync(fd)\n"
        "OSError: [Errno 5] Input/output error\n"
        "ts=2026-12-05 03:31:50,000 level=INFO node=started replica=0\n"
        "ts=2026-12-05 03:31:51,250 level=ERROR node=crashed replica=0\n"
        "Traceback (most recent call last):\n"
        '  File "/remote/code/vr/journal.py", line 77, in write\n'
        "    assert slot < 4\n"
        "           ^^^^^^^^\n"
        "AssertionError\n"
    )
    (failure,) = read_log("n1", log)  # the disk error is a fail-stop, not an assertion
    assert failure.message == ""
    assert failure.where == "vr/journal.py:77 in write: assert slot < 4"
    assert failure.log_line == 8


def _nemesis(index: int, time_ns: int, f: str, value: object = None) -> list[Op]:
    return [
        Op(index=index, time_ns=time_ns, process="nemesis", type="info", f=f, key=None, value=None),
        Op(index=index + 1, time_ns=time_ns + 1, process="nemesis", type="info", f=f, key=None, value=value),
    ]


def test_the_sentence_names_node_time_faults_message_and_place() -> None:
    ops = [
        Op(index=0, time_ns=1_000_000_000, process=0, type="invoke", f="read", key=1, value=None),
        *_nemesis(1, 2_000_000_000, "start-messages", {"targets": ["n2"], "mode": "flap"}),
        *_nemesis(3, 9_000_000_000, "stop-messages"),
    ]
    failure = {
        "node": "n3",
        "message": "(953, 957)",
        "where": "vr/replica.py:1549 in _primary_start_view_from_dvcs: assert chosen.head >= self.commit_min",
        "mono_ns": 4_500_000_000,
        "log_line": 23,
    }
    entry = check_assertions({"nodes": ["n1", "n2", "n3"], "failures": [failure]}, ops)
    assert entry["valid"] is False
    assert entry["summary"] == (
        "n3 failed a replica assertion at 3.50 s into the run, under messages flap · n2: AssertionError "
        "(953, 957) at vr/replica.py:1549 in _primary_start_view_from_dvcs: assert chosen.head >= "
        "self.commit_min (nodes/n3/node.log line 23)"
    )
    quiet = check_assertions({"nodes": ["n1"], "failures": [dict(failure, mono_ns=9_500_000_000)]}, ops)
    assert "with no fault active" in quiet["summary"]
    remote = check_assertions({"nodes": ["n3"], "failures": [dict(failure, mono_ns=10**15)]}, ops)
    assert "n3 failed a replica assertion (time unknown): AssertionError (953, 957)" in remote["summary"]
    assert check_assertions({"nodes": ["n1", "n2", "n3"], "failures": []}, ops)["valid"] is True
    assert check_assertions({"error": "PermissionError: node.log"}, ops)["valid"] == "unknown"


def test_the_recorded_failures_decide_the_verdict_of_a_linearizable_history(tmp_path: Path) -> None:
    """``assertions.json`` (as the run writes it) makes ``check_run`` (run verdict, report, recheck) an anomaly."""
    with HistoryWriter(tmp_path / "history.jsonl") as writer:
        writer.append({"process": 0, "type": "invoke", "f": "write", "key": "a", "value": 1})
        writer.append({"process": 0, "type": "ok", "f": "write", "key": "a", "value": 1})
    (tmp_path / "test.json").write_text(json.dumps({"test": {"workload": {"model": "cas-register"}}}))
    assert "assertions" not in check_run(tmp_path)["checkers"]  # a run that did not look says nothing

    class System:
        def node_names(self) -> tuple[str, ...]:
            return ("n1", "n2")

        def assertion_failures(self) -> list[dict[str, object]]:
            return [{"node": "n2", "message": "(4, 4)", "where": "vr/replica.py:1 in f", "log_line": 3}]

    record_assertions(RunDir(tmp_path), System())
    results = check_run(tmp_path)
    assert results["checkers"]["linearizable"]["valid"] is True
    assert results["valid"] is False
    assert results["checkers"]["assertions"]["summary"].startswith(
        "n2 failed a replica assertion (time unknown)"
    )


@pytest.mark.integration
@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="ratchet run creates network namespaces, which needs root")
def test_ratchet_run_reports_an_assertion_under_kills_as_an_anomaly(tmp_path: Path) -> None:
    """The kill nemesis SIGKILLs nodes; only the node that asserted is named, and the run is an anomaly."""
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "kill", *RUN_FLAGS, "--store", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        env={**os.environ, **trip_env(2, 60)},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    run = (tmp_path / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is False
    entry = results["checkers"]["assertions"]
    assert entry["valid"] is False
    assert {f["node"] for f in entry["failures"]} == {"n3"}
    history = (run / "history.jsonl").read_text()
    assert '"start-kill"' in history  # the nemesis did kill, and no kill was taken for an assertion
    first = entry["failures"][0]
    assert first["sentence"].startswith("n3 failed a replica assertion at ")
    assert "in _execute: assert header.op == self.commit_min + 1" in first["sentence"]
    assert "n3 failed a replica assertion" in done.stdout + done.stderr
    assert "n3 failed a replica assertion" in json.loads((run / "report.json").read_text())["reason"]
