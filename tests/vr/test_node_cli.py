"""``python -m vr.node`` refuses every bad configuration with exit 3 and one paragraph.

Each case runs the real module in a subprocess, exactly as an operator or the
harness would, and checks the promise from docs/contracts.md §3: a non-zero
exit (3), a single paragraph on stderr that names the problem, and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.vr.test_bus import free_ports
from vr.bugs import BUGS


def run_node(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vr.node", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=cwd,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    text = done.stderr.strip()
    assert text.startswith("vr.node: error:"), text
    assert "\n" not in text, f"one paragraph, got:\n{text}"
    for needle in needles:
        assert needle in text, f"{needle!r} missing from: {text}"


@pytest.fixture
def peers() -> str:
    ports = free_ports(3)
    return ",".join(f"127.0.0.{i + 1}:{port}" for i, port in enumerate(ports))


def test_missing_required_options(tmp_path: Path) -> None:
    assert_refused(run_node(), "--id is required")
    assert_refused(run_node("--id", "0", "--data", str(tmp_path)), "--peers is required")


@pytest.mark.parametrize(
    ("peers_text", "needle"),
    [
        ("nonsense", "not host:port"),
        ("127.0.0.1:1,127.0.0.1:99999", "outside 1..65535"),
        ("127.0.0.1:4001,127.0.0.2:4002", "odd count"),
        ("127.0.0.1:4001,127.0.0.2:4002,127.0.0.1:4001", "both replica 0 and replica 2"),
    ],
)
def test_bad_peers(tmp_path: Path, peers_text: str, needle: str) -> None:
    assert_refused(run_node("--id", "0", "--peers", peers_text, "--data", str(tmp_path), "--format"), needle)


def test_id_out_of_range(tmp_path: Path, peers: str) -> None:
    assert_refused(run_node("--id", "3", "--peers", peers, "--data", str(tmp_path)), "--id 3", "0..2")
    assert_refused(run_node("--id", "x", "--peers", peers, "--data", str(tmp_path)), "invalid int value")


def test_data_dir_must_exist(tmp_path: Path, peers: str) -> None:
    missing = tmp_path / "nope"
    assert_refused(
        run_node("--id", "0", "--peers", peers, "--data", str(missing)), "not an existing directory"
    )


def test_missing_data_file_without_format_is_refused_with_the_reason(tmp_path: Path, peers: str) -> None:
    done = run_node("--id", "1", "--peers", peers, "--data", str(tmp_path))
    assert_refused(done, "does not exist", "--format", "bug #10")
    assert not (tmp_path / "replica.vr").exists(), "a refused start must not create the data file"


def test_format_over_an_existing_data_file_is_refused(tmp_path: Path, peers: str) -> None:
    (tmp_path / "replica.vr").write_bytes(b"precious")
    assert_refused(
        run_node("--id", "0", "--peers", peers, "--data", str(tmp_path), "--format"), "already exists"
    )
    assert (tmp_path / "replica.vr").read_bytes() == b"precious"


def test_unknown_bug_suggests_the_closest_name(tmp_path: Path, peers: str) -> None:
    done = run_node(
        "--id", "0", "--peers", peers, "--data", str(tmp_path), "--format", "--bug", "ack-before-fsnyc"
    )
    assert_refused(done, "'ack-before-fsnyc'", "Did you mean 'ack-before-fsync'")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--tick-ms", "0"], "--tick-ms 0"),
        (["--cluster", "-1"], "u64"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--events", "/nonexistent-dir/e.jsonl"], "--events"),
        (["--log", "/nonexistent-dir/n.log"], "--log"),
        (["--event-loop", "trio"], "--event-loop"),
    ],
)
def test_other_bad_options(tmp_path: Path, peers: str, extra: list[str], needle: str) -> None:
    assert_refused(
        run_node("--id", "0", "--peers", peers, "--data", str(tmp_path), "--format", *extra), needle
    )


def test_list_bugs_describes_every_planted_bug() -> None:
    done = run_node("--list-bugs")
    assert done.returncode == 0, done.stderr
    for name, bug in BUGS.items():
        assert name in done.stdout
        assert bug.exposed_by in done.stdout


def test_refusals_leave_no_files_behind(tmp_path: Path, peers: str) -> None:
    before = sorted(os.listdir(tmp_path))
    run_node("--id", "0", "--peers", peers, "--data", str(tmp_path), "--bug", "nope")
    assert sorted(os.listdir(tmp_path)) == before


def test_event_log_writes_one_flushed_json_line_per_event(tmp_path: Path) -> None:
    from vr.events import EventLog

    clock = iter(range(100, 200))
    path = tmp_path / "events.jsonl"
    log = EventLog(str(path), replica=2, mono_ns=lambda: next(clock), wall_ns=lambda: 1_700_000_000_000)
    log.emit("view_change_started", view=3)
    # Flushed per line: readable before close, so a SIGKILL cannot eat it.
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {
        "mono_ns": 100,
        "wall_ns": 1_700_000_000_000,
        "replica": 2,
        "kind": "view_change_started",
        "view": 3,
    }
    log.emit("repaired_slot", op=7, checksum=b"\x01\xff", senders={2, 0})
    log.close()
    second = json.loads(path.read_text().splitlines()[1])
    assert second["checksum"] == "01ff" and second["senders"] == [0, 2]
    assert log.count == 2
    with pytest.raises(AssertionError):
        EventLog(None, replica=0).emit("x", replica=3)


def test_uvloop_asked_for_but_not_installed_is_refused_and_auto_falls_back(
    tmp_path: Path, peers: str
) -> None:
    """Docker and ssh hosts run the package with a bare python3: no uvloop there."""
    no_uvloop = (
        "import runpy, sys; sys.modules['uvloop'] = None; runpy.run_module('vr.node', run_name='__main__')"
    )

    def node(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", no_uvloop, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)

    base = ("--id", "0", "--peers", peers, "--data", str(tmp_path), "--format")
    assert_refused(node(*base, "--event-loop", "uvloop"), "uvloop is not installed", "--event-loop asyncio")
    assert not (tmp_path / "replica.vr").exists()
    chosen = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['uvloop'] = None; from vr.node import parse_config; "
         f"print(parse_config({[*base, '--event-loop', 'auto']!r}).event_loop)"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert chosen.stdout.strip() == "asyncio"
