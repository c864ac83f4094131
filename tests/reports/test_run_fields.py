"""The banner's fields read from test.json in the harness's shape, and from flat or missing fields."""

from __future__ import annotations

from pathlib import Path

from reports.run import (
    fault_kinds_configured,
    node_names,
    planted_bug,
    replay_command,
    reproduce_command,
    scenario_name,
    seed_of,
)

HARNESS_SHAPE = {
    "test": {
        "name": "partition-majority",
        "nodes": 3,
        "bug": "read-from-backup",
        "seed": 7,
        "nemesis": {"faults": ["partition", "pause"]},
        "store_dir": "store",
    },
    "seed": 7,
    "command_line": [
        "/usr/bin/python3",
        "/usr/local/bin/ratchet",
        "run",
        "--bug",
        "read-from-backup",
        "--seed",
        "7",
    ],
    "cluster": {
        "kind": "local",
        "nodes": {"n1": "127.0.0.1:4001", "n2": "127.0.0.2:4001", "n3": "127.0.0.3:4001"},
    },
}
RUN = Path("/somewhere/store/partition-majority/20261122T030000")


def test_harness_shaped_test_json() -> None:
    assert scenario_name(HARNESS_SHAPE, RUN) == "partition-majority"
    assert seed_of(HARNESS_SHAPE) == 7
    assert planted_bug(HARNESS_SHAPE) == "read-from-backup"
    assert fault_kinds_configured(HARNESS_SHAPE) == ["partition", "pause"]
    assert node_names(HARNESS_SHAPE, RUN) == ["n1", "n2", "n3"]
    assert reproduce_command(HARNESS_SHAPE) == "ratchet run --bug read-from-backup --seed 7"
    assert (
        replay_command(HARNESS_SHAPE, RUN) == "ratchet run --replay store/partition-majority/20261122T030000"
    )


def test_module_launcher_and_plain_commands() -> None:
    launched = {"command_line": ["python3", "/work/main/harness/cli.py", "run", "a b"]}
    assert reproduce_command(launched) == "ratchet run 'a b'"
    assert reproduce_command({"command_line": ["make", "chaos"]}) == "make chaos"
    assert reproduce_command({"reproduce": "ratchet run x"}) == "ratchet run x"


def test_missing_fields_fall_back(tmp_path: Path) -> None:
    run = tmp_path / "store" / "kill" / "20261122T030000"
    (run / "nodes" / "n2").mkdir(parents=True)
    assert scenario_name({}, run) == "kill"  # the store directory names it
    assert seed_of({}) is None and planted_bug({}) is None and reproduce_command({}) is None
    assert replay_command({}, run) is None
    assert node_names({}, run) == ["n2"]
    assert node_names({"nodes": 2}, tmp_path) == ["n1", "n2"]
