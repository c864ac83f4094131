"""`ratchet run` against real local VR clusters: the product path, end to end.

Each test runs the CLI as a subprocess with a short time limit (bounded: the
run plus setup, recovery, final reads and checking stays within ~20-40 s) and
checks the exit code, ``results.json``, the history, and that nothing was left
behind: no process of the run, no namespace (by the inode recorded in
test.json), no packet-filter table on the host, no mount.

Claims: without faults and under each fault kind the correct VR is valid;
every partition shape is exercised at least once across the suite (all seven
3-node shapes in one run, majorities-ring on 5 nodes); a planted bug is found
(read-from-backup under rolling kills, and under plain partitions with clients bound to nodes: exit 1,
the stale read in results.json); SIGINT to ``ratchet run`` stops it
cleanly with a readable history.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkers.history import read_history
from tests.harness.leftovers import netns_users

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="checks the host's ruleset (nft list tables), which needs root"
    ),
]

THREE_NODE_SHAPES = ["one", "primary", "majority", "minority-third", "bridge", "one-way", "random"]


def ratchet(store: Path, *args: str, timeout_s: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_dir(store: Path) -> Path:
    return (store / "latest").resolve()


def assert_nothing_left(run: Path) -> None:
    test_json = json.loads((run / "test.json").read_text())
    assert not netns_users(test_json["namespace"]["net"]), "the run's network namespace still exists"
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert str(run) not in ps, "a node process of the run is still running"
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=True)
    assert "ratchet" not in tables.stdout, "a ratchet table appeared on the host"
    assert str(run) not in Path("/proc/mounts").read_text(), "a mount of the run is still there"


def views_after_startup(run: Path) -> list[int]:
    """Views completed beyond view 1 (every cluster goes through view 1 as it starts): a later view
    means a replica stopped hearing the primary, e.g. because a partition cut it off."""
    return [
        event["view"]
        for node in sorted(p.name for p in (run / "nodes").iterdir())
        for line in (run / "nodes" / node / "events.jsonl").read_text().splitlines()
        if line.strip()
        and (event := json.loads(line))["kind"] == "view_change_completed"
        and event["view"] > 1
    ]


def event_kinds(run: Path, node: str) -> list[str]:
    path = run / "nodes" / node / "events.jsonl"
    return [json.loads(line)["kind"] for line in path.read_text().splitlines() if line.strip()]


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def nemesis_completions(run: Path) -> list[dict]:
    ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [op for op in ops if op["process"] == "nemesis" and op["value"] is not None]


def check_valid_run(store: Path, proc: subprocess.CompletedProcess[str], kind: str | None) -> Path:
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir(store)
    verdict = results(run)
    assert verdict["valid"] is True
    assert verdict["teardown_errors"] == []
    ops = read_history(run / "history.jsonl")
    assert sum(1 for op in ops if op.type == "ok") > 20
    if kind is not None:
        started = [op for op in nemesis_completions(run) if op["f"] == f"start-{kind}"]
        assert started, f"no {kind} fault was injected"
        assert any(op["value"]["targets"] for op in started)
    for node in ("n1", "n2", "n3"):
        assert (run / "nodes" / node / "node.log").exists()
        assert not (run / "nodes" / node / "data").exists(), "data is kept only for failed runs"
    assert_nothing_left(run)
    return run


def test_no_faults_is_valid(tmp_path: Path) -> None:
    proc = ratchet(tmp_path, "no-faults", "--time-limit", "6", "--seed", "1")
    check_valid_run(tmp_path, proc, None)
    assert "VALID" in proc.stderr


def test_partitions_every_three_node_shape_is_valid(tmp_path: Path) -> None:
    proc = ratchet(
        tmp_path,
        "--clients",
        "nodes",  # requests go first to each client's own node: backups redirect them, correctly
        "--nemesis",
        "partition",
        "--grudges",
        ",".join(THREE_NODE_SHAPES),
        "--nemesis-interval",
        "0.6",
        "--time-limit",
        "16",
        "--seed",
        "11",
    )
    run = check_valid_run(tmp_path, proc, "partition")
    shapes = {op["value"]["shape"] for op in nemesis_completions(run) if op["f"] == "start-partition"}
    assert shapes == set(THREE_NODE_SHAPES)
    # The cluster felt it: isolating the primary forces a view change (one past the startup view; a
    # filter that missed the nodes' packets, e.g. connections not leaving from the node's address,
    # leaves the cluster in view 1).
    assert views_after_startup(run), "no view change after startup: did the partitions cut anything?"


def test_majorities_ring_on_five_nodes_is_valid(tmp_path: Path) -> None:
    proc = ratchet(
        tmp_path,
        "--nodes",
        "5",
        "--nemesis",
        "partition",
        "--grudges",
        "majorities-ring",
        "--nemesis-interval",
        "1",
        "--time-limit",
        "8",
        "--seed",
        "12",
    )
    run = check_valid_run(tmp_path, proc, "partition")
    ring = [op for op in nemesis_completions(run) if op["f"] == "start-partition"]
    assert all(len(op["value"]["grudge"]) == 5 for op in ring)


@pytest.mark.parametrize("kind", ["pause", "kill", "loss", "rolling-kill"])
def test_process_and_loss_faults_are_valid(tmp_path: Path, kind: str) -> None:
    proc = ratchet(
        tmp_path, "--nemesis", kind, "--nemesis-interval", "1.5", "--time-limit", "10", "--seed", "13"
    )
    run = check_valid_run(tmp_path, proc, kind)
    if kind == "kill":  # a killed node came back by recovering from its data file
        killed = {
            t for op in nemesis_completions(run) if op["f"] == "start-kill" for t in op["value"]["targets"]
        }
        assert any(event_kinds(run, n).count("recovered_from_disk") >= 2 for n in killed)


# read-from-backup (docs/vr.md bug #11) under rolling-kill: a backup killed for 1.5 s comes back, stale, just as the
# primary dies, and clients (0.3 s per-attempt timeout in the scenario) turn to the backups while it still
# answers as a normal backup. Measured: see the scenario file. A seed fixes the faults, not the cluster's
# timing: one 20 s run found it in 20 of 24 tries here (fewer when the machine is busy), so the claim is
# "within three runs" (seeds 3, 4, 5): at that rate all three miss about once in 200 suites.
def test_read_from_backup_is_found_by_rolling_kills(tmp_path: Path) -> None:
    for seed in ("3", "4", "5"):
        store = tmp_path / f"seed-{seed}"
        proc = ratchet(store, "rolling-kill", "--bug", "read-from-backup", "--seed", seed)
        if proc.returncode != 0:
            break
        assert_nothing_left(run_dir(store))  # a run that missed it still cleaned up
    assert proc.returncode == 1, proc.stderr[-3000:]
    run = run_dir(store)
    verdict = results(run)
    assert verdict["valid"] is False
    linearizable = verdict["checkers"]["linearizable"]
    assert linearizable["valid"] is False
    first = linearizable["first_unlinearizable"]
    assert first["f"] == "read" and first["outcome"] == "ok"  # a stale read: the anomaly this bug makes
    assert str(first["key"]) == str(linearizable["key"])
    assert linearizable["counterexample"]
    rolled = [
        op for op in nemesis_completions(run) if op["f"] == "start-rolling-kill" and op["value"]["targets"]
    ]
    assert rolled and all(op["value"]["lagging"] != op["value"]["primary"] for op in rolled)
    assert (run / "nodes" / "n1" / "data").exists(), "data files are kept for a failed run"
    assert_nothing_left(run)


# read-from-backup under plain partitions, the issue's own example: with clients bound to nodes, as
# Jepsen's are, a read goes first to the client's node; with the bug a backup answers it from its own
# state, and a partition that cuts that backup off from the primary makes the answer stale. Measured:
# exit 1 in 9 of 9 runs of 15-20 s (seeds 1-8).
def test_read_from_backup_is_found_by_partitions_with_clients_on_nodes(tmp_path: Path) -> None:
    proc = ratchet(
        tmp_path,
        "--bug",
        "read-from-backup",
        "--nemesis",
        "partition",
        "--clients",
        "nodes",
        "--nemesis-interval",
        "3",
        "--time-limit",
        "15",
        "--seed",
        "1",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    run = run_dir(tmp_path)
    linearizable = results(run)["checkers"]["linearizable"]
    assert linearizable["valid"] is False
    first = linearizable["first_unlinearizable"]
    assert first["f"] == "read" and first["outcome"] == "ok"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    stale = next(op for op in history if op["index"] == first["complete_index"])
    assert stale["node"] in {"n1", "n2", "n3"}  # the node whose reply it was
    assert any(op["f"] == "start-partition" for op in nemesis_completions(run))
    assert_nothing_left(run)


# no-client-table (docs/vr.md bug #13): a retried request executed twice. On a register the duplicate usually lands
# next to itself and is invisible; the append workload makes it a value listed twice in every later read.
def test_no_client_table_is_found_by_the_append_workload(tmp_path: Path) -> None:
    proc = ratchet(tmp_path, "append-kill", "--bug", "no-client-table", "--seed", "1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    run = run_dir(tmp_path)
    verdict = results(run)
    assert verdict["valid"] is False
    append = verdict["checkers"]["append"]
    assert append["valid"] is False
    first = append["first_anomaly"]
    assert first["kind"] == "duplicate"  # the anomaly this bug makes
    assert first["op"]["f"] == "read" and first["op"]["key"] == append["key"]
    listed = first["op"]["value_out"]
    assert len(listed) > len(set(listed))
    assert_nothing_left(run)


def test_append_workload_under_kills_is_valid_on_the_correct_cluster(tmp_path: Path) -> None:
    proc = ratchet(tmp_path, "append-kill", "--time-limit", "10", "--seed", "13")
    run = check_valid_run(tmp_path, proc, "kill")
    append = results(run)["checkers"]["append"]
    assert append["valid"] is True and append["key_count"] >= 8
    ops = read_history(run / "history.jsonl")
    assert any(op.f == "read" and op.type == "ok" and op.value and len(op.value) > 3 for op in ops)


def test_sigint_stops_a_vr_run_cleanly(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "--nemesis",
            "partition,pause,kill",
            "--nemesis-interval",
            "1",
            "--time-limit",
            "60",
            "--store",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 40
    history = tmp_path / "latest" / "history.jsonl"
    while time.monotonic() < deadline:
        if history.exists() and history.read_text().count('"ok"') > 30 and '"start-' in history.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # to the pid the user sees: the guardian forwards it into the run
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 2, err[-3000:]
    run = run_dir(tmp_path)
    verdict = results(run)
    assert verdict["valid"] == "unknown"
    assert verdict["reason"] == "interrupted"
    assert verdict["teardown_errors"] == []
    assert read_history(run / "history.jsonl")
    heals = [op for op in nemesis_completions(run) if op["value"].get("teardown")]
    healed_lines = [line for line in verdict["teardown"] if line.startswith("healed")]
    assert len(heals) == 2 * len(healed_lines)  # each teardown heal is an invocation + completion pair
    assert_nothing_left(run)


def test_ctrl_c_at_a_terminal_stops_the_run_once_and_cleanly(tmp_path: Path) -> None:
    """Ctrl-C typed at a terminal (the pty sends SIGINT to the foreground group) ends the run with exit 2."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: ratchet run on the pty
        os.execvp(
            sys.executable,
            [
                sys.executable,
                "-m",
                "harness.cli",
                "run",
                "no-faults",
                "--time-limit",
                "60",
                "--store",
                str(tmp_path),
            ],
        )
    output = b""

    def read_for(seconds: float, *, until: bytes | None = None) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (until and until in output):
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                output += chunk

    read_for(30, until=b"phase main")  # the live display shows the main phase: clients are running
    read_for(2)
    os.write(fd, b"\x03")
    read_for(40)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 2, output.decode(errors="replace")[-2000:]
    run = run_dir(tmp_path)
    verdict = results(run)
    assert verdict["reason"] == "interrupted"
    assert verdict["teardown_errors"] == []
    assert output.count(b"SIGINT: stopping") == 1
    assert read_history(run / "history.jsonl")
    assert_nothing_left(run)
