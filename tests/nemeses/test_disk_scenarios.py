"""The disk fault kinds in scenarios and the nemesis package: validation, refusal, the rules they send.

No FUSE here: the nemeses are driven against a recording stand-in for faultfs's control
(the real daemon is covered by test_disk_faultfs.py), and capability refusal is checked
with a machine that lacks FUSE.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from core.errors import BadInput
from core.scenario import SCENARIO_DIR, Test, build_test, read_table
from harness.capabilities import Capability
from nemeses.disk.nemesis import DISK_MODES, DiskNemesis, PowerCutNemesis, rule_for
from vr.layout import Layout

CAPS = {
    "namespaces": Capability("namespaces", True, "ok"),
    "signals": Capability("signals", True, "ok"),
    "fuse": Capability("fuse", True, "ok"),
}


def load(name: str, caps: dict[str, Capability] = CAPS) -> Test:
    path = SCENARIO_DIR / f"{name}.toml"
    return build_test(read_table(path), source=str(path), seed_if_absent=1, capabilities=caps)


def test_disk_scenarios_validate_and_round_trip() -> None:
    for name in ("disk-eio", "power-cut"):
        test = load(name)
        assert Test.from_json(test.to_json()) == test
    assert load("power-cut").nemesis.power_cut_stall_ms == 1000
    assert load("disk-eio").nemesis.disk_faults == DISK_MODES


def test_a_machine_without_fuse_refuses_disk_faults_with_the_reason() -> None:
    no_fuse = {**CAPS, "fuse": Capability("fuse", False, "/dev/fuse is missing", "apt-get install fuse3")}
    with pytest.raises(BadInput, match=r"'power-cut' fault needs fuse.*/dev/fuse is missing.*fuse3"):
        load("power-cut", no_fuse)


def test_unknown_disk_mode_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[nemesis]\nfaults = ["disk"]\ndisk_faults = ["eio-fsnyc"]\n')
    with pytest.raises(BadInput, match="did you mean 'eio-fsync'"):
        build_test(read_table(path), source=str(path), seed_if_absent=1, capabilities=CAPS)


class FakeMount:
    def __init__(self) -> None:
        self.rules: list[dict[str, Any]] = []
        self.cuts: list[dict[str, Any]] = []
        self.cleared: list[Any] = []
        self.mounted = True

    def add_rule(self, **rule: Any) -> dict[str, Any]:
        self.rules.append(rule)
        return rule

    def clear(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        self.cleared.append(ids)
        return [{"id": i, "hits": 2} for i in ids or []]

    def power_cut(self, *, torn: bool, seed: int) -> list[dict[str, Any]]:
        self.cuts.append({"torn": torn, "seed": seed})
        return [{"dropped_bytes": 8192, "torn_kept": [[0, 4096]] if torn else []}]


class FakeMounts:
    def __init__(self, nodes: tuple[str, ...]) -> None:
        self.by_node = {n: FakeMount() for n in nodes}

    def get(self, node: str) -> FakeMount:
        return self.by_node[node]


class FakeSystem:
    def __init__(self) -> None:
        self.running = {"n1", "n2", "n3"}
        self.log: list[tuple[str, str]] = []

    def node_names(self) -> tuple[str, ...]:
        return ("n1", "n2", "n3")

    def primary(self) -> str:
        return "n2"

    def is_running(self, node: str) -> bool:
        return node in self.running

    def kill(self, node: str, *, wait: bool = True) -> bool:
        self.log.append(("kill" if wait else "signal", node))
        was = node in self.running
        self.running.discard(node)
        return was

    def start(self, node: str) -> None:
        self.log.append(("start", node))
        self.running.add(node)


def test_rules_aim_at_the_data_file_and_its_wal_zone() -> None:
    layout = Layout()
    rule = rule_for("eio-write", rule_id="r", rng=random.Random(1), layout=layout)
    assert rule == {
        "id": "r",
        "op": "write",
        "error": "EIO",
        "file": "replica.vr",
        "offset_min": layout.wal_headers_offset,
        "offset_max": layout.snapshots_offset,
    }
    stall = rule_for("stall", rule_id="s", rng=random.Random(1), layout=layout)
    assert stall["error"] is None and 100 <= stall["stall_ms"] <= 2000


def test_disk_nemesis_installs_clears_and_restarts_what_exited() -> None:
    system, mounts = FakeSystem(), FakeMounts(("n1", "n2", "n3"))
    nemesis = DiskNemesis(
        system=system, mounts=mounts, modes=["eio-fsync"], specs=["primary"], rng=random.Random(3)
    )  # type: ignore[arg-type]
    started = nemesis.start()
    assert started["targets"] == ["n2"] and started["mode"] == "eio-fsync"
    assert mounts.get("n2").rules == [{"id": "disk-1", "op": "fsync", "error": "EIO", "file": "replica.vr"}]
    system.running.discard("n2")  # its fsync failed: the node exited
    stopped = nemesis.stop()
    assert stopped == {"targets": ["n2"], "hits": {"n2": 2}, "restarted": ["n2"]}
    assert mounts.get("n2").cleared == [["disk-1"]]
    assert nemesis.active is None


def test_power_cut_slows_backups_signals_cuts_then_reaps_and_keeps_the_primary_down() -> None:
    system, mounts = FakeSystem(), FakeMounts(("n1", "n2", "n3"))
    sleeps: list[float] = []
    nemesis = PowerCutNemesis(
        system=system,
        mounts=mounts,
        specs=["all"],
        stall_ms=500,
        rng=random.Random(7),
        sleep=sleeps.append,  # type: ignore[arg-type]
    )
    value = nemesis.start()
    assert value["slowed"] == ["n1", "n3"] and value["down"] == ["n2"]
    assert mounts.get("n2").rules == []  # the primary's disk is not slowed
    assert mounts.get("n1").rules[0]["stall_ms"] == -1
    assert sleeps[0] == 0.5
    assert all(len(mounts.get(n).cuts) == 1 for n in ("n1", "n2", "n3"))
    assert value["lost"]["n1"]["dropped_bytes"] == 8192
    signals = [n for op, n in system.log if op == "signal"]
    assert signals == ["n1", "n2", "n3"]
    assert ("start", "n2") not in system.log and ("start", "n1") in system.log
    assert nemesis.stop() == {"targets": ["n1", "n2", "n3"], "restarted": ["n2"]}
