"""The ssh home against real sshd hosts (network namespaces on a private bridge, real keys, real nft).

Short, bounded tests for the default suite: the cluster's own operations checked
from outside (the kernel's /proc and nft tables of each host, TCP through the
filter), a short `ratchet run`, and a controller killed with SIGKILL whose
leftovers `ratchet clean --ssh` finds and removes.
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

from clusters.firewall import Drop
from clusters.ssh.cluster import SSHCluster
from clusters.ssh.connection import Login, SSHError, connect
from tests.clusters.conftest import ssh_scenario
from tests.clusters.sshhosts import SSHHosts

RATCHET = str(Path(sys.executable).with_name("ratchet"))
LISTEN = "import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); " \
    "print('listening', sys.argv[1], flush=True); time.sleep(60)"  # fmt: skip


def _login(hosts: SSHHosts, **changes: object) -> Login:
    base = {"username": "root", "private_key": str(hosts.key), "known_hosts": str(hosts.known_hosts)}
    return Login(**{**base, **changes})  # type: ignore[arg-type]


def _state(pid: int) -> str | None:
    """The kernel's view (hosts share this machine's PID namespace), independent of the cluster's."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _can_connect(hosts: SSHHosts, i: int, address: str, port: int) -> bool:
    """A TCP connection from host ``i``'s namespace (its own address as source) to address:port."""
    probe = hosts.on_host(
        i, sys.executable, "-c",
        "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)",
        address, str(port), check=False,
    )  # fmt: skip
    return probe.returncode == 0


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None  # gone meanwhile


def _leftovers(hosts: SSHHosts, *, settle_s: float = 3.0) -> dict[str, object]:
    """Everything of Ratchet's on the hosts: processes (not sshd's), nft tables, run directories.
    Asked again for up to ``settle_s`` while something is found: a closing SSH session's process
    may take a moment to go."""
    deadline = time.monotonic() + settle_s
    while True:
        found: dict[str, object] = {}
        for i in range(hosts.count):
            procs = [
                p for p in hosts.host_pids(i) if (cmd := _cmdline(p)) is not None and b"sshd" not in cmd[:40]
            ]
            tables = hosts.on_host(i, "nft", "list", "tables").stdout.split()
            dirs = hosts.in_host_mounts(i, "ls", "-A", hosts.remote_dir).stdout.split()
            if procs or "ratchet" in " ".join(tables) or dirs:
                found[hosts.addresses[i]] = {"processes": procs, "tables": tables, "dirs": dirs}
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_nodes_signals_firewall_and_close_on_real_hosts(in_control: SSHHosts, tmp_path: Path) -> None:
    hosts = in_control
    run = tmp_path / "run"
    (run / "nodes").mkdir(parents=True)
    pwned = f"ratchet-ssh-test-{os.getpid()}"  # created in the login's home directory if ever run
    remote_dir = f"{hosts.remote_dir}/we ird'$(touch {pwned});\"x"  # quoted everywhere, never run
    cluster = SSHCluster(
        hosts.addresses, _login(hosts), run_dir=run, remote_dir=remote_dir, keep_data="always"
    )
    try:
        assert [n.address for n in cluster.nodes] == [
            f"{a}:{7100 + i}" for i, a in enumerate(hosts.addresses)
        ]
        assert cluster.path("n2", run / "nodes/n2/node.log") == f"{cluster.base}/run/nodes/n2/node.log"
        pids = {}
        for node in cluster.nodes:
            out = run / "nodes" / node.name / "output.log"
            pids[node.name] = cluster.spawn(
                node.name, ["python3", "-c", LISTEN, node.host, str(node.port)], output_path=out
            )
            cluster.make_dirs(node.name, run / "nodes" / node.name / "data")
        assert all(_state(pid) in {"S", "R"} for pid in pids.values())
        assert cluster.pause("n1") and _state(pids["n1"]) == "T" and cluster.is_paused("n1")
        assert cluster.resume("n1") and _state(pids["n1"]) != "T" and not cluster.is_paused("n1")
        assert cluster.kill("n3") and _state(pids["n3"]) is None
        assert not cluster.is_running("n3") and cluster.exit_code("n3") == 137
        assert cluster.unexpected_exits() == []

        ends = cluster.endpoints()
        n2 = ends["n2"]
        deadline = time.monotonic() + 10
        while not _can_connect(hosts, 0, n2.host, n2.port) and time.monotonic() < deadline:
            time.sleep(0.1)  # n2's listener is up once its python started
        assert _can_connect(hosts, 0, n2.host, n2.port)
        cluster.firewall.apply("partition", [Drop(ends["n1"], n2)])  # read back by apply itself
        table = json.loads(hosts.on_host(0, "nft", "-j", "list", "ruleset").stdout)["nftables"]
        comments = [i["rule"].get("comment") for i in table if "rule" in i]
        assert comments == ["n1->n2"]  # on n1's host, and on no other host
        assert "ratchet" not in hosts.on_host(1, "nft", "list", "tables").stdout
        assert not _can_connect(hosts, 0, n2.host, n2.port)  # n1 cannot reach n2
        assert _can_connect(hosts, 2, n2.host, n2.port)  # n3's host still can
        assert cluster.firewall.heal("partition")
        assert _can_connect(hosts, 0, n2.host, n2.port)
        cluster.firewall.apply("partition", [Drop(ends["n1"], n2)])  # left for close() to remove
    finally:
        lines = cluster.close()
    assert not (Path.home() / pwned).exists() and not (Path("/") / pwned).exists()
    text = "\n".join(lines)
    for i, address in enumerate(hosts.addresses):
        assert f"{address}: removed {cluster.base}" in text
        name = f"n{i + 1}"
        output = (run / "nodes" / name / "output.log").read_text()
        assert output.startswith(f"listening {address}") or (name == "n3" and "listening" in output)
        assert (run / "nodes" / name / "data").is_dir()  # keep_data = always: data came back too
    assert f"{hosts.addresses[0]}: removed nft table inet ratchet_{cluster.tag}" in text
    assert "stopped n1" in text and "stopped n2" in text
    assert _leftovers(hosts) == {}


def test_host_keys_are_checked_unless_the_user_opts_out(in_control: SSHHosts, tmp_path: Path) -> None:
    hosts = in_control
    stranger = tmp_path / "known_hosts"
    stranger.write_text(hosts.known_hosts.read_text().splitlines()[1] + "\n")  # host 2's key only
    with pytest.raises(SSHError, match="not found in known_hosts"):
        connect(hosts.addresses[0], _login(hosts, known_hosts=str(stranger)))
    wrong = tmp_path / "wrong_hosts"
    wrong.write_text(hosts.addresses[0] + " " + " ".join(stranger.read_text().split()[1:]) + "\n")
    with pytest.raises(SSHError, match=r"host key changed"):
        connect(hosts.addresses[0], _login(hosts, known_hosts=str(wrong)))
    with pytest.warns(UserWarning, match="Unknown ssh-ed25519 host key"):  # accepted, loudly
        host = connect(hosts.addresses[0], _login(hosts, known_hosts=str(stranger), strict_host_keys=False))
    try:
        assert host.address == hosts.addresses[0] and host.controller_address == hosts.controller_address
        assert host.run(["echo", "a b", "$(id)", "'"]).stdout == "a b $(id) '\n"  # argv, quoted
    finally:
        host.close()


def _ratchet(hosts: SSHHosts, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        hosts.in_control(RATCHET, *args), capture_output=True, text=True, timeout=timeout, check=False
    )


def test_faults_the_ssh_home_cannot_inject_are_refused_with_the_reason(
    ssh_hosts: SSHHosts, tmp_path: Path
) -> None:
    scenario = ssh_scenario(ssh_hosts, tmp_path / "s.toml", faults=["partition"], time_limit_s=5)
    store = str(tmp_path / "store")
    proc = _ratchet(ssh_hosts, "run", str(scenario), "--nemesis", "partition,clock", "--store", store)
    assert proc.returncode == 3, proc.stderr  # asked of the hosts: every one answers, none can
    assert "clock faults" in proc.stderr and "control files" in proc.stderr
    proc = _ratchet(ssh_hosts, "run", str(scenario), "--nemesis", "corrupt", "--store", store)
    assert proc.returncode == 3 and "data file" in proc.stderr and "ssh" in proc.stderr, proc.stderr
    assert _leftovers(ssh_hosts) == {}


def test_a_short_run_on_ssh_hosts_is_valid_and_leaves_nothing(ssh_hosts: SSHHosts, tmp_path: Path) -> None:
    scenario = ssh_scenario(
        ssh_hosts,
        tmp_path / "s.toml",
        faults=["partition", "pause", "kill"],
        time_limit_s=6,
        keep_data="never",
    )
    store = tmp_path / "store"
    proc = _ratchet(ssh_hosts, "run", str(scenario), "--store", str(store), "--seed", "7", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = (store / "latest").resolve()
    results = json.loads((run / "results.json").read_text())
    assert results["valid"] is True and results["teardown_errors"] == []
    for i, address in enumerate(ssh_hosts.addresses):
        events = run / "nodes" / f"n{i + 1}" / "events.jsonl"
        assert events.stat().st_size > 0  # downloaded from the host, where the node wrote it
        assert any(line.startswith(f"{address}: removed ") for line in results["teardown"])
    test_json = json.loads((run / "test.json").read_text())
    assert test_json["cluster"]["kind"] == "ssh"
    assert _leftovers(ssh_hosts) == {}


def test_sigkill_of_the_controller_leaves_what_ratchet_clean_finds_and_removes(
    ssh_hosts: SSHHosts, tmp_path: Path
) -> None:
    scenario = ssh_scenario(ssh_hosts, tmp_path / "s.toml", faults=["partition"], time_limit_s=60)
    controller = subprocess.Popen(
        ssh_hosts.in_control(
            RATCHET, "run", str(scenario), "--store", str(tmp_path / "store"), "--no-progress"
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            history = list((tmp_path / "store").glob("*/*/history.jsonl"))
            if history and history[0].stat().st_size > 2000:
                break  # nodes up, clients answered
            assert controller.poll() is None, "the run ended before it was killed"
            time.sleep(0.2)
        else:
            pytest.fail("the run did not start within 60 s")
    finally:
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(timeout=10)
    left = _leftovers(ssh_hosts, settle_s=0)
    assert len(left) == 3 and all(v["processes"] and v["dirs"] for v in left.values())  # type: ignore[index]
    common = [
        "clean", "--ssh", "--nodes", ",".join(ssh_hosts.addresses), "--username", "root",
        "--ssh-private-key", str(ssh_hosts.key), "--known-hosts", str(ssh_hosts.known_hosts),
        "--remote-dir", ssh_hosts.remote_dir,
    ]  # fmt: skip
    dry = _ratchet(ssh_hosts, *common, "--dry-run", timeout=60)
    assert dry.returncode == 0 and dry.stdout.count("would remove") == 3, dry.stdout + dry.stderr
    done = _ratchet(ssh_hosts, *common, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("killed process group") == 3 and done.stdout.count("removed /") == 3
    assert _leftovers(ssh_hosts) == {}


def test_ratchet_clean_without_hosts_is_bad_input() -> None:
    proc = subprocess.run(
        [RATCHET, "clean", "--ssh"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 3 and "--nodes" in proc.stderr


def test_hosts_sees_its_own_file_tree(ssh_hosts: SSHHosts) -> None:
    """The premise of the download checks: a host's remote_dir is its own, the controller sees none of it."""
    ssh_hosts.in_host_mounts(0, "touch", f"{ssh_hosts.remote_dir}/only-on-h0")
    try:
        assert not Path(ssh_hosts.remote_dir, "only-on-h0").exists()
        assert "only-on-h0" not in ssh_hosts.in_host_mounts(1, "ls", ssh_hosts.remote_dir).stdout
    finally:
        ssh_hosts.in_host_mounts(0, "rm", f"{ssh_hosts.remote_dir}/only-on-h0")


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_a_non_root_login_with_sudo_runs_nodes_rules_and_signals_as_root(
    sudo_hosts: SSHHosts, tmp_path: Path
) -> None:
    """``Login(sudo=True)`` as a non-root user: the node runs as root, pause/kill reach it, an nft
    rule is installed, and close() removes all of it (the root-owned files too). Without sudo
    the same login cannot install a rule: the probe refuses a partition (exit 3, says --sudo)."""
    hosts = sudo_hosts
    scenario = ssh_scenario(hosts, tmp_path / "s.toml", faults=["partition"], time_limit_s=5)
    refused = _ratchet(hosts, "run", str(scenario), "--store", str(tmp_path / "store"), timeout=60)
    assert refused.returncode == 3 and "--sudo" in refused.stderr, refused.stderr[-3000:]
    run = tmp_path / "run"
    (run / "nodes").mkdir(parents=True)
    hosts.enter_control()
    try:
        cluster = SSHCluster(
            hosts.addresses[:2], _login(hosts, username=hosts.username, sudo=True), run_dir=run,
            remote_dir=hosts.remote_dir, keep_data="always",
        )  # fmt: skip
        try:
            pids = {}
            for node in cluster.nodes:
                out = run / "nodes" / node.name / "output.log"
                pids[node.name] = cluster.spawn(
                    node.name, ["python3", "-c", LISTEN, node.host, str(node.port)], output_path=out
                )
                cluster.make_dirs(node.name, run / "nodes" / node.name / "data")
            assert all(_uid(pid) == 0 for pid in pids.values())  # through sudo, not as the login
            assert cluster.pause("n1") and _state(pids["n1"]) == "T"
            assert cluster.resume("n1") and _state(pids["n1"]) != "T"
            ends = cluster.endpoints()
            cluster.firewall.apply("partition", [Drop(ends["n1"], ends["n2"])])  # read back by apply
            assert "ratchet" in hosts.on_host(0, "nft", "list", "tables").stdout
            assert cluster.kill("n2") and _state(pids["n2"]) is None
        finally:
            lines = cluster.close()
    finally:
        hosts.leave_control()
    text = "\n".join(lines)
    assert f"{hosts.addresses[0]}: removed nft table inet ratchet_{cluster.tag}" in text
    assert all(f"{a}: removed {cluster.base}" in text for a in hosts.addresses[:2])
    assert (run / "nodes" / "n1" / "output.log").read_text().startswith(f"listening {hosts.addresses[0]}")
    assert _leftovers(hosts) == {}
