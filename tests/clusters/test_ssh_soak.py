"""Long proofs of the ssh home (``-m soak``): the 60 s scenario valid, a planted bug found,
5 and 7 hosts, a Ctrl-C that leaves nothing on the hosts, and a whole run as a non-root login
with ``--sudo``."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.conftest import ssh_scenario
from tests.clusters.sshhosts import SSHHosts, available
from tests.clusters.test_ssh import RATCHET, _leftovers, _ratchet

pytestmark = pytest.mark.soak


@pytest.fixture
def hosts_of(tmp_path: Path) -> Iterator[object]:
    made: list[SSHHosts] = []

    def make(count: int) -> SSHHosts:
        reason = available()
        if reason:
            pytest.skip(f"ssh test hosts unavailable: {reason}")
        hosts = SSHHosts(count, tmp_path / f"hosts{count}")
        hosts.workdir.mkdir()
        made.append(hosts.start())
        return hosts

    try:
        yield make
    finally:
        for hosts in made:
            hosts.close()


def _valid_run(hosts: SSHHosts, tmp_path: Path, *args: str, time_limit_s: float) -> dict:
    scenario = ssh_scenario(
        hosts, tmp_path / "s.toml", faults=["partition", "pause", "kill"], time_limit_s=time_limit_s
    )
    store = tmp_path / "store"
    proc = _ratchet(
        hosts, "run", str(scenario), "--store", str(store), "--no-progress", *args, timeout=time_limit_s + 240
    )
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results["valid"] is True and results["teardown_errors"] == []
    assert _leftovers(hosts) == {}
    return results


def test_the_60_s_scenario_is_valid_on_3_hosts(hosts_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _valid_run(hosts_of(3), tmp_path, "--seed", "1", time_limit_s=60)


@pytest.mark.parametrize("count", [5, 7])
def test_5_and_7_hosts(hosts_of, tmp_path: Path, count: int) -> None:  # type: ignore[no-untyped-def]
    _valid_run(hosts_of(count), tmp_path, "--seed", "2", time_limit_s=15)


def test_read_from_backup_is_found_on_ssh_hosts(hosts_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hosts = hosts_of(3)
    scenario = ssh_scenario(hosts, tmp_path / "s.toml", faults=["partition"], time_limit_s=15)
    store = tmp_path / "store"
    proc = _ratchet(
        hosts, "run", str(scenario), "--store", str(store), "--no-progress",
        *("--bug", "read-from-backup", "--clients", "nodes", "--nemesis-interval", "3", "--seed", "1"),
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    assert results["checkers"]["linearizable"]["valid"] is False
    assert _leftovers(hosts) == {}


def test_ctrl_c_leaves_nothing_on_the_hosts(hosts_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hosts = hosts_of(3)
    scenario = ssh_scenario(hosts, tmp_path / "s.toml", faults=["partition", "pause"], time_limit_s=60)
    store = tmp_path / "store"
    controller = subprocess.Popen(
        hosts.in_control(RATCHET, "run", str(scenario), "--store", str(store), "--no-progress"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        history = list(store.glob("*/*/history.jsonl"))
        if history and history[0].stat().st_size > 2000 and time.monotonic() > deadline - 50:
            break  # nodes up, clients answered, a fault or two injected
        time.sleep(0.2)
    # The SIGINT a terminal's Ctrl-C sends to the foreground process group reaches `ip netns exec`'s child too.
    children = subprocess.run(
        ["pgrep", "-P", str(controller.pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in [controller.pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
    _, stderr = controller.communicate(timeout=120)
    results = json.loads(((store / "latest").resolve() / "results.json").read_text())
    assert results["completed"] is False and results["teardown_errors"] == [], stderr[-2000:]
    assert any("removed /" in line for line in results["teardown"])
    assert _leftovers(hosts) == {}


def test_a_non_root_login_runs_with_sudo_and_leaves_nothing(sudo_hosts: SSHHosts, tmp_path: Path) -> None:
    """``--username rtuser --sudo``: the hosts' login is no root, so nft needs sudo. A short run
    with ``--sudo`` is valid, a partition (nft), a pause and a kill (signals to the root-owned
    node) each land, and every process, rule and file goes at teardown, including the root-owned
    ones the nodes wrote."""
    hosts = sudo_hosts
    assert hosts.username != "root"
    scenario = ssh_scenario(
        hosts, tmp_path / "s.toml", faults=["partition", "pause", "kill"], time_limit_s=6, keep_data="never"
    )
    store = tmp_path / "store"
    proc = _ratchet(
        hosts, "run", str(scenario), "--sudo", "--nemesis-interval", "1", "--seed", "3",
        "--store", str(store), "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["teardown_errors"] == []
    spec = json.loads((run / "test.json").read_text())["test"]["cluster_spec"]
    assert spec["sudo"] is True and spec["username"] == hosts.username
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    landed = {
        op["f"] for op in history if op["process"] == "nemesis" and op["value"] and op["value"].get("targets")
    }
    # nft through sudo, and signals to a root-owned node (fewer changes fit on a loaded machine)
    assert "start-partition" in landed and landed & {"start-pause", "start-kill"}, landed
    for i, address in enumerate(hosts.addresses):
        assert (run / "nodes" / f"n{i + 1}" / "events.jsonl").stat().st_size > 0
        assert any(line.startswith(f"{address}: removed ") for line in results["teardown"])
    assert _leftovers(hosts) == {}


def test_ratchet_clean_with_sudo_removes_a_sigkilled_sudo_runs_leftovers(
    sudo_hosts: SSHHosts, tmp_path: Path
) -> None:
    """The nodes of a ``--sudo`` run are root's processes in root's files on the hosts; after the
    controller's SIGKILL, ``ratchet clean --ssh --username rtuser --sudo`` kills and removes them."""
    hosts = sudo_hosts
    scenario = ssh_scenario(hosts, tmp_path / "s.toml", faults=["partition"], time_limit_s=60)
    store = tmp_path / "store"
    controller = subprocess.Popen(
        hosts.in_control(RATCHET, "run", str(scenario), "--sudo", "--store", str(store), "--no-progress"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = list(store.glob("*/*/history.jsonl"))
            if history and history[0].stat().st_size > 2000:
                break  # nodes up, clients answered
            assert controller.poll() is None, "the run ended before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("the run did not start within 60 s")
    finally:
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(timeout=10)
    left = _leftovers(hosts, settle_s=0)
    assert len(left) == 3 and all(v["processes"] and v["dirs"] for v in left.values())  # type: ignore[index]
    common = [
        "clean", "--ssh", "--nodes", ",".join(hosts.addresses), "--username", hosts.username, "--sudo",
        "--ssh-private-key", str(hosts.key), "--known-hosts", str(hosts.known_hosts),
        "--remote-dir", hosts.remote_dir,
    ]  # fmt: skip
    done = _ratchet(hosts, *common, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("killed process group") == 3 and done.stdout.count("removed /") == 3, done.stdout
    assert _leftovers(hosts) == {}
