"""`ratchet scenarios`, `ratchet doctor`, bad flags of `ratchet run`, and `--replay`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.scenario import SCENARIO_DIR
from harness.cli import main

RUN_KV = Path(__file__).resolve().parent / "run_kv.py"


def test_scenarios_lists_every_named_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for path in SCENARIO_DIR.glob("*.toml"):
        assert path.stem in out


def test_doctor_lists_faults_and_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    for fault in ("partition", "loss", "pause", "kill", "clock", "disk", "power-cut", "corrupt", "dm-flakey"):
        assert fault in out
    assert "namespaces" in out
    from harness.capabilities import probe_dm_flakey

    if not probe_dm_flakey().available:  # refused with the reason where device-mapper is missing
        assert "'dm-flakey' fault needs dm-flakey" in " ".join(out.split())
    if os.geteuid() == 0:
        assert code == 0


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--time-limit", "0"], "--time-limit: run.time_limit_s = 0.0: must be between 1 and 86400"),
        (["--bug", "read-from-bakup"], "Did you mean 'read-from-backup'"),
        (["--nemesis", "partiton"], "did you mean 'partition'"),
        (
            ["--nodes", "3", "--nemesis", "partition", "--grudges", "majorities-ring"],
            "cannot be partitioned as majorities-ring",
        ),
        (["no-such-scenario"], "no scenario named 'no-such-scenario'"),
        (["--replay", "/nonexistent/run"], "is not a stored run"),
    ],
)
def test_bad_run_input_is_exit_3_with_one_paragraph(
    flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *flags]) == 3
    err = capsys.readouterr().err.replace("\n", " ")
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_replay_reruns_the_same_scenario_and_seed(tmp_path: Path) -> None:
    scenario = tmp_path / "kv.toml"
    scenario.write_text(
        'name = "kv"\ndescription = "replay"\n[nemesis]\nfaults = ["pause"]\ninterval_s = 1\n'
        "[run]\ntime_limit_s = 3\nconcurrency = 2\nrecovery_s = 2\n"
    )
    store = tmp_path / "store"
    first = subprocess.run(
        [sys.executable, str(RUN_KV), str(store), str(scenario), "--seed", "77"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    original = (store / "latest").resolve()
    second = subprocess.run(
        [sys.executable, str(RUN_KV), str(store), "--replay", str(original)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    replayed = (store / "latest").resolve()
    assert replayed != original
    a = json.loads((original / "test.json").read_text())
    b = json.loads((replayed / "test.json").read_text())
    assert a["seed"] == b["seed"] == 77
    assert a["test"] == b["test"]


def test_partition_is_refused_up_front_where_no_packet_filter_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No nft and no iptables on PATH: the real probe finds neither and the run is refused, before
    anything starts, with what was tried and what to install (as root or not: the same rule)."""
    true = shutil.which("true")
    assert true is not None
    (tmp_path / "true").symlink_to(true)  # the namespace probe runs `true`; nothing else is on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["run", "--nemesis", "partition,pause"]) == 3
    err = capsys.readouterr().err.replace("\n", " ")
    assert "needs packet-filter" in err
    assert "nft: not installed; iptables: not installed" in err
    assert "apt-get install nftables" in err
