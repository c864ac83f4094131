"""A verdict never lies, and re-checking never loses facts (without starting a cluster).

Claims: re-checking a run merges the checkers' new entries into what the run
recorded and keeps every other fact; a run that did not complete stays unknown
whatever its history says; a run with no results.json did not finish;
``ratchet check RUN_DIR`` judges a stored run by its own model (list-append
included) and by its own end; ``ratchet ... | head`` keeps the command's exit
code; keys that look like Rich markup are printed literally; the heartbeat
line says elapsed, phase, ops and faults; ``--replay store/latest`` is recorded
as the run directory it named.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from checkers.history import Op
from harness import verdict
from harness.cli import main
from tests.reports.handmade import write_run

REPO = Path(__file__).resolve().parents[2]

INTERRUPTED_RECORD = {
    "valid": "unknown",
    "checkers": {},
    "reason": "interrupted",
    "completed": False,
    "teardown": ["healed partition on n2", "stopped n1"],
    "teardown_errors": [],
    "recovered": None,
    "node_exits": [{"node": "n3", "pid": 7, "exit_code": 1}],
    "elapsed_s": 5.4,
}


def op(index: int, process: Any, type_: str, f: str, key: Any, value: Any, node: str | None = None) -> Op:
    return Op(index, 1_000_000 * (index + 1), process, type_, f, key, value, None, node)


def register_history(key: Any = "k", read_value: int = 1) -> list[Op]:
    """write 1, then a read returning ``read_value`` (2 is an anomaly: nothing wrote 2)."""
    return [
        op(0, 0, "invoke", "write", key, 1),
        op(1, 0, "ok", "write", key, 1, "n1"),
        op(2, 1, "invoke", "read", key, None),
        op(3, 1, "ok", "read", key, read_value, "n2"),
    ]


TEST_JSON = {"test": {"name": "t", "seed": 1, "workload": {"name": "register", "model": "cas-register"}}}


def test_recheck_of_an_interrupted_run_keeps_every_fact_and_stays_unknown(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "s" / "t" / "1", register_history(), results=INTERRUPTED_RECORD, test=TEST_JSON
    )
    merged = verdict.recheck(run)
    assert merged["valid"] == "unknown" and merged["completed"] is False
    for name in ("reason", "teardown", "teardown_errors", "recovered", "node_exits", "elapsed_s"):
        assert merged[name] == INTERRUPTED_RECORD[name], name
    assert merged["history_valid"] is True  # what the checkers said of the recorded part
    assert merged["checkers"]["linearizable"]["valid"] is True


def test_recheck_of_a_run_with_no_results_is_a_run_that_did_not_finish(tmp_path: Path) -> None:
    from reports.run import DID_NOT_FINISH

    run = write_run(tmp_path / "s" / "t" / "1", register_history(), results=None, test=TEST_JSON)
    (run / ".reserve").write_bytes(b"\0" * 4096)  # what a killed controller leaves behind
    merged = verdict.recheck(run)
    assert merged["valid"] == "unknown" and merged["reason"] == DID_NOT_FINISH
    assert not (run / ".reserve").exists()


def test_recheck_of_a_completed_run_takes_the_new_verdict_and_keeps_the_rest(tmp_path: Path) -> None:
    record = {**INTERRUPTED_RECORD, "completed": True, "valid": True}
    del record["reason"]
    run = write_run(
        tmp_path / "s" / "t" / "1", register_history(read_value=2), results=record, test=TEST_JSON
    )
    merged = verdict.recheck(run)
    assert merged["valid"] is False and merged["history_valid"] is False
    assert merged["teardown"] == record["teardown"] and merged["elapsed_s"] == 5.4


def test_legacy_results_without_completed_are_judged_by_their_reason() -> None:
    fresh = {"valid": True, "checkers": {}}
    assert verdict.merge({"valid": "unknown", "reason": "interrupted"}, fresh)["valid"] == "unknown"
    assert verdict.merge({"valid": "unknown", "reason": "checking failed: X"}, fresh)["valid"] is True
    assert "reason" not in verdict.merge({"valid": "unknown", "reason": "checking failed: X"}, fresh)


@pytest.mark.parametrize("results", [INTERRUPTED_RECORD, None], ids=["interrupted", "no-results"])
def test_report_and_check_of_an_unfinished_run_say_unknown_and_why(
    tmp_path: Path, results: dict[str, Any] | None, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    run = write_run(store / "t" / "20261204T000000", register_history(), results=results, test=TEST_JSON)
    (store / "latest").symlink_to(run.relative_to(store))
    assert main(["check", str(run)]) == 2
    assert main(["check", str(run), "--results"]) == 2
    assert main(["report", str(run)]) == 2
    out = capsys.readouterr()
    why = "interrupted" if results else "the run did not finish"
    assert f"the run's verdict stays unknown: {why}" in out.out
    recorded = json.loads((run / "results.json").read_text())
    assert recorded["valid"] == "unknown" and recorded["reason"].startswith(why)
    if results:
        assert recorded["teardown"] == INTERRUPTED_RECORD["teardown"]
    summary = json.loads((run / "report.json").read_text())
    assert summary["verdict"] == "unknown" and summary["reason"].startswith(why)
    html = (run / "report.html").read_text()
    assert "missing or incomplete" not in html and why in html
    index = (store / "index.html").read_text()
    assert why in index and "missing or incomplete" not in index


def test_a_node_crash_is_named_in_the_banner(tmp_path: Path) -> None:
    from reports.build import write_run_report

    record = {**INTERRUPTED_RECORD, "completed": True, "valid": True}
    del record["reason"]
    run = write_run(tmp_path / "s" / "t" / "1", register_history(), results=record, test=TEST_JSON)
    write_run_report(run)
    assert "a node crashed: n3 (exit code 1)" in json.loads((run / "report.json").read_text())["reason"]


def test_check_run_dir_uses_the_runs_model_and_list_append_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    appends = [
        op(0, 0, "invoke", "append", "k", 1),
        op(1, 0, "ok", "append", "k", 1, "n1"),
        op(2, 1, "invoke", "read", "k", None),
        op(3, 1, "ok", "read", "k", [1], "n2"),
    ]
    test = {"test": {"name": "a", "seed": 1, "workload": {"name": "append", "model": "list-append"}}}
    record = {"valid": True, "checkers": {}, "completed": True}
    run = write_run(tmp_path / "s" / "a" / "1", appends, results=record, test=test)
    assert main(["check", str(run)]) == 0
    assert "model list-append" in capsys.readouterr().out
    loose = tmp_path / "appends.jsonl"
    loose.write_bytes((run / "history.jsonl").read_bytes())
    assert main(["check", str(loose), "--model", "list-append"]) == 0
    assert main(["check", str(loose)]) == 3  # cas-register has no append: bad input, as before


def test_rich_markup_in_keys_is_printed_literally(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    write_run(tmp_path / "r", register_history(key="[bold]x[/bold]", read_value=2), results=None, test=None)
    history.write_bytes((tmp_path / "r" / "history.jsonl").read_bytes())
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "check", str(history)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr
    assert "key '[bold]x[/bold]'" in proc.stdout


def test_the_run_summary_prints_history_values_literally(tmp_path: Path) -> None:
    from harness.session import _print_summary
    from harness.store import RunDir

    console = Console(record=True, width=300)
    (tmp_path / "report.json").write_text(json.dumps({"reason": "linearizable: key [red]k[/red]: read"}))
    results = {"valid": False, "checkers": {"linearizable": {"valid": False, "summary": "[bold]x"}}}
    _print_summary(console, RunDir(tmp_path), results, "report: [b]r", seed=3)
    text = console.export_text()
    assert "key [red]k[/red]: read" in text and "([bold]x)" in text and "report: [b]r" in text


def test_closing_the_pipe_early_keeps_the_exit_code() -> None:
    """`ratchet scenarios | head -0`: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "scenarios"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr


def test_the_heartbeat_line_says_elapsed_phase_ops_and_faults() -> None:
    import time
    from collections import Counter
    from types import SimpleNamespace

    from harness.progress import Heartbeat
    from harness.runner import RunState

    counts = SimpleNamespace(counts=Counter({"ok": 1200, "fail": 5, "info": 2}))
    state = RunState(phase="main", started_ns=time.monotonic_ns() - 65_000_000_000)
    state.active_faults = {"partition": {"targets": ["n1"]}}
    beat = Heartbeat(recorder=counts, state=state, console=Console(), every_s=5)  # type: ignore[arg-type]
    assert beat.line() == "[1:05] main: ok 1200, fail 5, info 2; faults active: partition[n1]"


def test_replay_of_latest_is_recorded_as_the_run_directory(tmp_path: Path) -> None:
    from harness.commands.run import recorded_argv

    run = tmp_path / "store" / "t" / "20261204T000000"
    run.mkdir(parents=True)
    (tmp_path / "store" / "latest").symlink_to(run.relative_to(tmp_path / "store"))
    latest = str(tmp_path / "store" / "latest")
    args = argparse.Namespace(replay=latest)
    argv = ["ratchet", "run", "--replay", latest, "--no-progress"]
    assert recorded_argv(argv, args) == ["ratchet", "run", "--replay", str(run), "--no-progress"]
    assert recorded_argv(["ratchet", "run", f"--replay={latest}"], args) == [
        "ratchet",
        "run",
        f"--replay={run}",
    ]


def test_the_index_says_why_for_runs_that_have_no_report(tmp_path: Path) -> None:
    from reports.index import write_index

    store = tmp_path / "store"
    write_run(store / "t" / "20261204T000000", register_history(), results=None, test=TEST_JSON)
    write_run(store / "t" / "20261204T000001", register_history(), results=INTERRUPTED_RECORD, test=TEST_JSON)
    index = write_index(store).read_text()
    assert "the run did not finish" in index and "interrupted" in index


def test_run_errors_print_system_messages_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.commands.run import _error

    _error("unshare: [Errno 1] Operation not permitted: [bold]x")
    assert "error: unshare: [Errno 1] Operation not permitted: [bold]x" in capsys.readouterr().err
