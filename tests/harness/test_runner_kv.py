"""The runner end to end on real processes (the KV test system), without VR.

Claims: a fault run on a correct system is valid (exit 0) and every fault it
started was stopped; a system that loses acknowledged writes on kill is caught
(exit 1, the anomaly in results.json); Ctrl-C (SIGINT) mid-run ends the run
with exit 2, a readable history, teardown recorded, and nothing left behind; a
controller killed with SIGKILL leaves a history whose lines all parse, and no
process, namespace or rule; a malformed scenario is exit 3 before anything
starts.
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

HERE = Path(__file__).resolve().parent
RUN_KV = HERE / "run_kv.py"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="checks the host's ruleset (nft list tables), which needs root"
    ),
]


def scenario(tmp_path: Path, body: str, name: str = "kv") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\ndescription = "test"\n{body}')
    return path


def run_kv(store: Path, path: Path, *flags: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_KV), str(store), str(path), *flags],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def latest(store: Path) -> Path:
    return (store / "latest").resolve()


def nemesis_ops(history: Path) -> list[dict]:
    return [json.loads(line) for line in history.read_text().splitlines() if '"nemesis"' in line]


def ratchet_processes(marker: str) -> list[str]:
    out = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def test_faults_on_a_correct_system_are_valid_and_every_fault_is_stopped(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        '[nemesis]\nfaults = ["partition", "pause", "kill", "loss"]\ninterval_s = 1\n'
        "[run]\ntime_limit_s = 6\nconcurrency = 4\nrecovery_s = 3\nseed = 5\n",
    )
    proc = run_kv(tmp_path / "store", path)
    assert proc.returncode == 0, proc.stderr
    run = latest(tmp_path / "store")
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True
    assert results["teardown_errors"] == []
    ops = read_history(run / "history.jsonl")
    assert sum(1 for op in ops if op.type == "ok") > 50
    nem = nemesis_ops(run / "history.jsonl")
    assert len(nem) % 2 == 0 and nem  # invocation + completion pairs
    started = {op["f"][6:] for op in nem if op["f"].startswith("start-")}
    assert started, "no fault was started in 6 s at a 1 s interval"
    stopped_last = {}
    for op in nem:
        stopped_last[op["f"].split("-", 1)[1]] = op["f"].startswith("stop-")
    assert all(stopped_last.values()), f"a fault kind was left started: {stopped_last}"
    test_json = json.loads((run / "test.json").read_text())
    assert test_json["seed"] == 5
    assert set(test_json["versions"]) == {"ratchet", "python", "kernel"}
    assert test_json["command_line"][0] == sys.executable
    assert not ratchet_processes(str(run))


def test_a_system_that_loses_acknowledged_writes_is_an_anomaly(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        '[nemesis]\nfaults = ["kill"]\nkill_targets = ["primary"]\ninterval_s = 1.5\n'
        "[workload]\nkeys = 2\n[run]\ntime_limit_s = 6\nconcurrency = 4\nrecovery_s = 3\nseed = 9\n",
    )
    proc = run_kv(tmp_path / "store", path, "--volatile")
    assert proc.returncode == 1, proc.stderr
    results = json.loads((latest(tmp_path / "store") / "results.json").read_text())
    assert results["valid"] is False
    linearizable = results["checkers"]["linearizable"]
    assert linearizable["valid"] is False
    assert "first_unlinearizable" in linearizable
    assert "counterexample" in linearizable
    assert "ANOMALY" in proc.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_tears_down_and_leaves_a_readable_history(tmp_path: Path, signum: int) -> None:
    path = scenario(
        tmp_path,
        '[nemesis]\nfaults = ["partition", "pause"]\ninterval_s = 1\n'
        "[run]\ntime_limit_s = 60\nconcurrency = 3\nseed = 3\n",
    )
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_KV), str(store), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    history = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until ops and a fault are in the history
        if (store / "latest" / "history.jsonl").exists():
            history = (store / "latest").resolve() / "history.jsonl"
            text = history.read_text()
            if text.count('"ok"') > 20 and '"start-' in text:
                break
        time.sleep(0.2)
    assert history is not None
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    results = json.loads((history.parent / "results.json").read_text())
    assert results["valid"] == "unknown"
    assert results["reason"] == "interrupted"
    assert results["teardown_errors"] == []
    assert any("stopped n1" in line for line in results["teardown"])
    ops = read_history(history)  # every line parses
    assert ops
    teardown_heals = [
        op for op in nemesis_ops(history) if isinstance(op["value"], dict) and op["value"].get("teardown")
    ]
    active_at_stop = results["teardown"]
    if any(line.startswith("healed") for line in active_at_stop):
        assert teardown_heals
    assert not ratchet_processes(str(history.parent))
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=True)
    assert "ratchet" not in nft.stdout


def test_sigkill_of_the_controller_leaves_a_parseable_history_and_nothing_running(tmp_path: Path) -> None:
    path = scenario(
        tmp_path,
        '[nemesis]\nfaults = ["partition"]\ninterval_s = 1\n'
        "[run]\ntime_limit_s = 60\nconcurrency = 3\nseed = 4\n",
    )
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_KV), str(store), str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    history = None
    while time.monotonic() < deadline:
        if (store / "latest" / "history.jsonl").exists():
            history = (store / "latest").resolve() / "history.jsonl"
            if history.read_text().count('"ok"') > 20:
                break
        time.sleep(0.2)
    assert history is not None
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ratchet_processes(str(history.parent)):
        time.sleep(0.1)
    assert not ratchet_processes(str(history.parent))
    size = history.stat().st_size
    time.sleep(0.3)
    assert history.stat().st_size == size  # nobody is writing any more
    ops = read_history(history)
    assert sum(1 for op in ops if op.type == "ok") > 20


def test_malformed_scenario_is_exit_3_with_file_and_key(tmp_path: Path) -> None:
    path = scenario(tmp_path, "[cluster]\nnodez = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    assert str(path) in proc.stderr.replace("\n", "")
    assert "nodez" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()


def test_a_run_whose_nodes_cannot_start_is_exit_2_and_still_tears_down(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[nemesis]\nfaults = ["pause"]\ninterval_s = 1\n[run]\ntime_limit_s = 5\n')
    proc = run_kv(tmp_path / "store", path, "--broken")
    assert proc.returncode == 2, proc.stderr
    run = latest(tmp_path / "store")
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] == "unknown"
    assert "kv servers did not start" in results["reason"]
    assert {e["node"] for e in results["node_exits"]} == {"n1", "n2", "n3"}
    assert results["teardown_errors"] == []
    assert (run / "test.json").exists()  # the run says what it was even though it never started
    assert not ratchet_processes(str(run))
