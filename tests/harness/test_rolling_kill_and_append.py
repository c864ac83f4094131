"""The rolling-kill fault's sequence and the append workload, without processes.

The rolling kill is driven against a recording System (test code only) so its
order of actions -- kill a backup, wait, kill the primary, restart the backup;
restart the primary on stop -- is checked exactly; the real-cluster effect is
measured by tests/harness/test_vr_runs.py. The append workload's generator is
driven by the simulated clock.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import workloads
from core import generator as gen
from core.errors import BadInput
from core.scenario import WorkloadSpec, build_test, read_table
from nemeses import packages
from nemeses.faults import RollingKillNemesis
from workloads import append

from .test_scenario import ALL_CAPS


class RecordingSystem:
    """Nodes as flags; every action appended to ``log`` (the order is what the test checks)."""

    def __init__(self, primary: str | None = "n1") -> None:
        self.running = {"n1": True, "n2": True, "n3": True}
        self._primary = primary
        self.log: list[tuple[str, str]] = []

    def node_names(self) -> tuple[str, ...]:
        return tuple(self.running)

    def primary(self) -> str | None:
        return self._primary

    def is_running(self, node: str) -> bool:
        return self.running[node]

    def kill(self, node: str) -> bool:
        self.log.append(("kill", node))
        was, self.running[node] = self.running[node], False
        return was

    def start(self, node: str) -> None:
        self.log.append(("start", node))
        self.running[node] = True


def test_rolling_kill_restarts_the_lagging_backup_as_the_primary_dies() -> None:
    system = RecordingSystem(primary="n2")
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        system.log.append(("sleep", str(seconds)))

    nemesis = RollingKillNemesis(system=system, rng=random.Random(3), lag_s=1.5, sleep=sleep)  # type: ignore[arg-type]
    value = nemesis.start()
    backup = value["lagging"]
    assert backup in ("n1", "n3") and value["primary"] == "n2"
    assert system.log == [("kill", backup), ("sleep", "1.5"), ("kill", "n2"), ("start", backup)]
    assert value["targets"] == [backup, "n2"] and value["down"] == ["n2"]
    assert nemesis.active is not None
    assert system.running == {"n1": True, "n2": False, "n3": True}
    stopped = nemesis.stop()
    assert stopped["restarted"] == ["n2"] and nemesis.active is None
    assert all(system.running.values())


def test_rolling_kill_without_a_known_primary_does_nothing() -> None:
    system = RecordingSystem(primary=None)
    nemesis = RollingKillNemesis(system=system, rng=random.Random(1), sleep=lambda s: None)  # type: ignore[arg-type]
    assert nemesis.start() == {"targets": [], "skipped": "no primary"}
    assert system.log == [] and nemesis.active is None


def test_rolling_kill_is_healed_last_and_needs_three_nodes(tmp_path: Path) -> None:
    assert packages.final(("rolling-kill", "partition"))[-1]["f"] == "stop-rolling-kill"
    path = tmp_path / "s.toml"
    path.write_text('[cluster]\nnodes = 1\n[nemesis]\nfaults = ["rolling-kill"]\ninterval_s = 2\n')
    with pytest.raises(BadInput, match="rolling-kill"):
        build_test(read_table(path), source=str(path), seed_if_absent=1, capabilities=ALL_CAPS)


def test_append_workload_is_selectable_and_values_are_unique(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[workload]\nname = "append"\nkeys = 3\n')
    test = build_test(read_table(path), source=str(path), seed_if_absent=1, capabilities=ALL_CAPS)
    assert (test.workload.name, test.workload.model) == ("append", "list-append")
    assert workloads.by_name("append") is append
    spec = WorkloadSpec(name="append", keys=3, rate_hz=0)
    ops = gen.simulate(
        gen.clients(gen.limit(300, append.generator(spec, ops_per_key=40))), seed=5, concurrency=4
    )
    again = gen.simulate(
        gen.clients(gen.limit(300, append.generator(spec, ops_per_key=40))), seed=5, concurrency=4
    )
    assert ops == again
    invokes = [op for op in ops if op["type"] == "invoke"]
    values = [op["value"] for op in invokes if op["f"] == "append"]
    assert len(values) == len(set(values)) > 50
    assert {op["f"] for op in invokes} == {"read", "append"}
    assert len({op["key"] for op in invokes}) > 3  # keys rotate


def test_append_invoke_classifies_outcomes() -> None:
    from core.system import OpFailed, OpIndeterminate

    class Scripted:
        last_node = "n1"

        def __init__(self, outcome: BaseException | None) -> None:
            self.outcome = outcome
            self.lists: dict[str, list[Any]] = {}

        def read(self, key: str) -> Any:
            return self.lists.get(key)

        def append(self, key: str, value: Any) -> None:
            if self.outcome is not None:
                raise self.outcome
            self.lists.setdefault(key, []).append(value)

    client = Scripted(None)
    assert append.invoke(client, {"f": "append", "key": 1, "value": 5}) == {"type": "ok", "value": 5}  # type: ignore[arg-type]
    assert append.invoke(client, {"f": "read", "key": 1, "value": None}) == {"type": "ok", "value": [5]}  # type: ignore[arg-type]
    failed = append.invoke(Scripted(OpFailed("not-a-list")), {"f": "append", "key": 1, "value": 6})  # type: ignore[arg-type]
    assert failed["type"] == "fail"
    unknown = append.invoke(Scripted(OpIndeterminate("timeout")), {"f": "append", "key": 1, "value": 7})  # type: ignore[arg-type]
    assert unknown["type"] == "info"
