"""The local cluster's faults are real and go away: shown on plain echo-server processes.

Each test runs ``tests/harness/netprobe.py`` inside a fresh run namespace
(clusters.namespace), so it needs no VR and leaves nothing on the host. A
partition must cut exactly the links its grudge names (measured by real TCP
round trips from processes carrying the sender node's identity) and be gone
after the heal; loss must drop some but not all round trips; pause must stop
the process (state T) and resume it; kill must end it and restart it.
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

from nemeses import grudges
from tests.harness.leftovers import netns_users

PROBE = Path(__file__).with_name("netprobe.py")

# The probes need no root (address rules work in a user namespace); the SIGKILL test reads the
# host's ruleset, which does.
pytestmark = [pytest.mark.integration]


def run_probe(*args: str, timeout_s: float = 90, firewall: str | None = None) -> dict:
    env = dict(os.environ)
    if firewall:
        env["RATCHET_FIREWALL"] = firewall
    proc = subprocess.run(
        [sys.executable, "-m", "clusters.namespace", "--", sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def heard_by(grudge: dict[str, list[str]], nodes: list[str]) -> dict[str, list[str]]:
    """a -> the nodes that hear what a sends. The probe measures exactly that: a round trip on a
    connection a opens from its own address succeeds iff a's packets reach b's listener (the echo
    goes back to a's ephemeral port, which no rule names: rules name the destination's listening
    port; VR nodes likewise send only on connections they open)."""
    hears = grudges.hears({k: frozenset(v) for k, v in grudge.items()}, nodes)
    return {a: sorted(hears.successors(a)) for a in nodes}


def check_shapes(result: dict, nodes: list[str]) -> None:
    full = {a: [b for b in nodes if b != a] for a in nodes}
    assert result["before"] == full
    for shape, seen in result["shapes"].items():
        grudge = seen["value"]["grudge"]
        assert grudge, f"{shape}: empty grudge"
        assert seen["during"] == heard_by(grudge, nodes), f"{shape}: links during the partition"
        assert seen["during"] != full, f"{shape}: the partition was not visible"
        want_rules = sorted(f"{src}->{dst}" for dst, srcs in grudge.items() for src in srcs)
        assert sorted(seen["rules"]) == want_rules, f"{shape}: rules read back"
        assert seen["healed"]["healed"] is True
        assert seen["after"] == full, f"{shape}: links after healing"
    if result["backend"] == "nft":
        assert result["removed_table"] is True  # heal drops the chain; teardown drops the table
    assert result["table_left"] is False
    assert result["leftover"] == []


def test_partitions_on_three_nodes_cut_exactly_the_grudge_and_heal() -> None:
    shapes = ["one", "primary", "majority", "bridge", "one-way", "random", "minority-third"]
    check_shapes(run_probe("partitions", "3", ",".join(shapes)), ["n1", "n2", "n3"])


def test_iptables_fallback_enforces_and_heals_the_same_shapes() -> None:
    result = run_probe("partitions", "3", "majority,one-way", firewall="iptables")
    assert result["backend"] == "iptables"
    check_shapes(result, ["n1", "n2", "n3"])


def test_majorities_ring_on_five_nodes() -> None:
    result = run_probe("partitions", "5", "majorities-ring")
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    check_shapes(result, nodes)
    during = result["shapes"]["majorities-ring"]["during"]
    assert all(len(reached) == 2 for reached in during.values())  # each sees 2 others: a majority of 5
    assert len({frozenset([a, *r]) for a, r in during.items()}) == 5  # no two see the same majority


def test_loss_drops_some_round_trips_then_none() -> None:
    result = run_probe("loss")
    assert result["before"] == 20
    assert 0 < result["during"] < 20 or (result["during"] == 0 and result["value"]["fraction"] > 0.5)
    assert result["during"] < 20
    assert result["after"] == 20
    assert result["leftover"] == []


def test_pause_stops_and_resumes_and_kill_restarts() -> None:
    result = run_probe("processes")
    pause = result["pause"]
    assert pause["state"] == "T"
    assert pause["reach_during"] == 0
    assert pause["stop"]["resumed"] == pause["value"]["targets"]
    assert pause["reach_after"] == 1
    kill = result["kill"]
    assert kill["value"]["targets"] == ["n1"]
    assert kill["running_during"] is False
    assert kill["reach_during"] == 0
    assert kill["stop"]["restarted"] == ["n1"]
    assert kill["new_pid_differs"] is True
    assert kill["reach_after"] == 1
    assert result["leftover"] == []


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="reading the host's ruleset (nft list tables) needs root")
def test_sigkill_of_the_controller_takes_nodes_rules_and_namespace_with_it() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusters.namespace", "--", sys.executable, str(PROBE), "hold"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        info = json.loads(line)
        assert netns_users(info["netns"]), "the run namespace should be in use while the run holds it"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and netns_users(info["netns"]):
        time.sleep(0.1)
    assert netns_users(info["netns"]) == []  # no process left in it: namespace and its rules are gone
    host_rules = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, timeout=10, check=True
    )
    assert "ratchet" not in host_rules.stdout  # the host's firewall was never touched
