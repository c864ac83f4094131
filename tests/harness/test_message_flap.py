"""The flapping cut of the messages nemesis, against an in-memory record of the plans it sets.

Claims: ``flap`` drops every frame to and from exactly one node at a time (never a healed gap
between two cuts), moves the cut to another node within the hold bound, binds ``primary`` to
the primary of the moment, records every move, and leaves every frame passing after the heal.
The real proxy's ``drop`` is covered in test_message_proxy.py.
"""

from __future__ import annotations

import itertools
import random
import threading
import time

from nemeses.messages import FLAP_HOLD_S, MessageNemesis

NODES = ("n1", "n2", "n3")


class RecordedControl:
    """Keeps every plan set on it (what the proxy would have been told), in order."""

    def __init__(self) -> None:
        self.plans: list[dict] = []
        self.cleared = 0
        self.lock = threading.Lock()

    def set_plan(self, **plan) -> None:
        with self.lock:
            self.plans.append(plan)

    def clear(self) -> None:
        self.cleared += 1

    def counters(self) -> dict[str, dict[str, int]]:
        return {}


class ThreeNodes:
    def __init__(self, primary: str = "n2") -> None:
        self.primary_now = primary

    def node_names(self) -> list[str]:
        return list(NODES)

    def primary(self) -> str | None:
        return self.primary_now


def nemesis(targets: tuple[str, ...], control: RecordedControl, system: ThreeNodes) -> MessageNemesis:
    return MessageNemesis(
        system=system,  # type: ignore[arg-type]
        control=control,
        modes=("flap",),
        targets=targets,
        probability=0.2,
        delay_ms_max=300,
        rng=random.Random(7),
    )


def cut_node(plan: dict) -> str:
    (node,) = set.intersection(*({a, b} for a, b in plan["links"]))
    return node


def test_flap_moves_a_full_cut_from_node_to_node_and_records_each_move() -> None:
    control = RecordedControl()
    fault = nemesis(("one",), control, ThreeNodes())
    started = fault.start()
    time.sleep(FLAP_HOLD_S[1] * 2 + 0.2)  # at least two moves after the first cut
    done = fault.stop()
    assert started["mode"] == "flap" and started["first"]["node"] in NODES
    assert len(control.plans) >= 3 and control.cleared == 1
    cuts = [cut_node(plan) for plan in control.plans]
    for plan, node in zip(control.plans, cuts, strict=True):
        assert plan["mode"] == "drop" and plan["probability"] == 1.0
        assert set(plan["links"]) == {(a, b) for a in NODES for b in NODES if a != b and node in (a, b)}
    assert all(a != b for a, b in itertools.pairwise(cuts))  # every move goes elsewhere
    assert [move["node"] for move in done["moves"]] == cuts
    times = [move["at_s"] for move in done["moves"]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(FLAP_HOLD_S[0] - 0.05 <= gap <= FLAP_HOLD_S[1] + 0.5 for gap in gaps), gaps
    assert done["healed"] and fault.active is None


def test_flap_binds_primary_late_and_moves_off_a_node_already_cut() -> None:
    control = RecordedControl()
    system = ThreeNodes(primary="n3")
    fault = nemesis(("primary",), control, system)
    first = fault.start()["first"]
    assert first["node"] == "n3"  # the primary of the moment
    system.primary_now = "n1"
    time.sleep(FLAP_HOLD_S[1] + 0.2)
    done = fault.stop()
    nodes = [move["node"] for move in done["moves"]]
    assert nodes[:2] == ["n3", "n1"]


def test_the_same_seed_moves_the_cut_through_the_same_nodes() -> None:
    runs = []
    for _ in range(2):
        control = RecordedControl()
        fault = nemesis(("one",), control, ThreeNodes())
        fault.start()
        time.sleep(FLAP_HOLD_S[1] + 0.1)
        runs.append([move["node"] for move in fault.stop()["moves"]][:2])
    assert runs[0] == runs[1]
